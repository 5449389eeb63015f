//! Policy text as ECR answers it. ECR does not return a repository or registry policy as it was
//! sent but re-serialized by Jackson's default pretty printer (`"Version" : "2012-10-17"`, arrays
//! on one line, objects indented two spaces per object level; AWS's own examples show it), so a
//! client comparing the text it gets back sees the same layout here. Member order is kept.

use serde_json::Value;

/// `text` laid out as ECR returns it; text that is not JSON (no stored policy is) comes back as is.
pub fn as_ecr_returns(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => {
            let mut out = String::with_capacity(text.len() * 2);
            write_value(&mut out, &value, 0);
            out
        }
        Err(_) => text.to_owned(),
    }
}

/// A lifecycle policy as ECR returns it from PutLifecyclePolicy, GetLifecyclePolicy and
/// DeleteLifecyclePolicy: without whitespace, members in the order sent (AWS's examples put a
/// pretty-printed file and get `{"rules":[{"rulePriority":1,…` back; a preview echoes the text).
pub fn lifecycle_as_ecr_returns(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => value.to_string(),
        Err(_) => text.to_owned(),
    }
}

/// `depth` counts enclosing objects only: Jackson's array separators are a single space.
fn write_value(out: &mut String, value: &Value, depth: usize) {
    match value {
        Value::Object(members) if members.is_empty() => out.push_str("{ }"),
        Value::Object(members) => {
            out.push('{');
            for (i, (name, member)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                new_line(out, depth + 1);
                out.push_str(&Value::from(name.as_str()).to_string());
                out.push_str(" : ");
                write_value(out, member, depth + 1);
            }
            new_line(out, depth);
            out.push('}');
        }
        Value::Array(items) if items.is_empty() => out.push_str("[ ]"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i > 0 { ", " } else { " " });
                write_value(out, item, depth);
            }
            out.push_str(" ]");
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn new_line(out: &mut String, depth: usize) {
    out.push('\n');
    out.extend(std::iter::repeat_n("  ", depth));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer in the example of `GetRepositoryPolicy` in AWS's SDK documentation.
    #[test]
    fn a_policy_comes_back_in_the_layout_of_aws_examples() {
        let sent = r#"{"Version":"2008-10-17","Statement":[{"Sid":"new statement","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::012345678901:role/CodeDeployDemo"},"Action":["ecr:GetDownloadUrlForLayer","ecr:BatchGetImage","ecr:BatchCheckLayerAvailability"]}]}"#;
        let expected = "{\n  \"Version\" : \"2008-10-17\",\n  \"Statement\" : [ {\n    \"Sid\" : \"new statement\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : {\n      \"AWS\" : \"arn:aws:iam::012345678901:role/CodeDeployDemo\"\n    },\n    \"Action\" : [ \"ecr:GetDownloadUrlForLayer\", \"ecr:BatchGetImage\", \"ecr:BatchCheckLayerAvailability\" ]\n  } ]\n}";
        assert_eq!(as_ecr_returns(sent), expected);
    }

    #[test]
    fn several_statements_empty_containers_numbers_and_escapes() {
        let sent = r#"{"Statement":[{"Condition":{"NumericLessThan":{"n":5}},"Resource":[]},{"Sid":"a\"b\\c\n","Effect":{}}]}"#;
        let expected = "{\n  \"Statement\" : [ {\n    \"Condition\" : {\n      \"NumericLessThan\" : {\n        \"n\" : 5\n      }\n    },\n    \"Resource\" : [ ]\n  }, {\n    \"Sid\" : \"a\\\"b\\\\c\\n\",\n    \"Effect\" : { }\n  } ]\n}";
        assert_eq!(as_ecr_returns(sent), expected);
        assert_eq!(serde_json::from_str::<Value>(expected).unwrap(), serde_json::from_str::<Value>(sent).unwrap());
    }

    #[test]
    fn text_that_is_not_json_is_returned_unchanged() {
        assert_eq!(as_ecr_returns("not json"), "not json");
    }
}
