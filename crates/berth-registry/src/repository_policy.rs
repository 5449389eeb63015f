//! ECR repository policies: IAM resource-policy documents, checked for the structure IAM
//! requires and stored verbatim. Berth does not enforce them (its users are not IAM principals).

use serde_json::Value;

use crate::lifecycle::PolicyError;

pub const MAX_POLICY_LENGTH: usize = 10_240;

const VERSIONS: [&str; 2] = ["2012-10-17", "2008-10-17"];

fn fail<T>(detail: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError(detail.into()))
}

/// Checks `text` is a resource policy IAM would accept in shape: a JSON object with an optional
/// `Version` of the two IAM knows, and `Statement` (one object or a non-empty list), each with
/// `Effect` Allow or Deny, a `Principal` (or `NotPrincipal`) and an `Action` (or `NotAction`)
/// of strings.
pub fn validate(text: &str) -> Result<(), PolicyError> {
    if text.chars().count() > MAX_POLICY_LENGTH {
        return fail(format!("the policy is longer than {MAX_POLICY_LENGTH} characters"));
    }
    let document: Value =
        serde_json::from_str(text).map_err(|e| PolicyError(format!("the policy is not valid JSON: {e}")))?;
    let Value::Object(document) = document else {
        return fail("the policy must be a JSON object");
    };
    if let Some(version) = document.get("Version")
        && !version.as_str().is_some_and(|v| VERSIONS.contains(&v))
    {
        return fail(format!("Version must be one of {VERSIONS:?}, not {version}"));
    }
    let statements = match document.get("Statement") {
        None => return fail("the policy has no Statement"),
        Some(Value::Array(list)) if list.is_empty() => return fail("Statement must not be empty"),
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        Some(other) => return fail(format!("Statement must be an object or a list of objects, not {other}")),
    };
    for (i, statement) in statements.into_iter().enumerate() {
        let at = format!("Statement[{i}]");
        let Value::Object(statement) = statement else {
            return fail(format!("{at} must be an object"));
        };
        match statement.get("Effect").and_then(Value::as_str) {
            Some("Allow" | "Deny") => {}
            _ => return fail(format!("{at}.Effect must be \"Allow\" or \"Deny\"")),
        }
        let principal = statement.get("Principal").or_else(|| statement.get("NotPrincipal"));
        match principal {
            Some(Value::String(s)) if s == "*" => {}
            Some(Value::Object(map)) if !map.is_empty() && map.values().all(strings) => {}
            _ => return fail(format!("{at} needs a Principal: \"*\" or an object like {{\"AWS\": [\"arn:...\"]}}")),
        }
        let action = statement.get("Action").or_else(|| statement.get("NotAction"));
        match action {
            Some(action) if strings(action) => {}
            _ => {
                return fail(format!("{at} needs an Action: a string or a list of strings like \"ecr:BatchGetImage\""));
            }
        }
    }
    Ok(())
}

/// A string, or a non-empty list of strings.
fn strings(value: &Value) -> bool {
    match value {
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty() && items.iter().all(|i| i.as_str().is_some_and(|s| !s.is_empty())),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_shapes() {
        let pull = r#"{"Version":"2012-10-17","Statement":[{"Sid":"pull","Effect":"Allow",
            "Principal":{"AWS":["arn:aws:iam::123456789012:root"]},
            "Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#;
        assert_eq!(validate(pull), Ok(()));
        let single = r#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"ecr:*"}}"#;
        assert_eq!(validate(single), Ok(()));
        let with_condition = r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","NotPrincipal":{"Service":"lambda.amazonaws.com"},
            "NotAction":"ecr:DeleteRepository","Condition":{"StringEquals":{"aws:sourceVpce":"vpce-1"}}}]}"#;
        assert_eq!(validate(with_condition), Ok(()));
    }

    #[test]
    fn refuses_what_iam_would() {
        for (text, says) in [
            ("{oops", "not valid JSON"),
            ("[]", "JSON object"),
            (r#"{"Version":"2020-01-01","Statement":[]}"#, "Version"),
            (r#"{"Version":"2012-10-17"}"#, "no Statement"),
            (r#"{"Statement":[]}"#, "must not be empty"),
            (r#"{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"ecr:*"}]}"#, "Effect"),
            (r#"{"Statement":[{"Effect":"Allow","Action":"ecr:*"}]}"#, "Principal"),
            (r#"{"Statement":[{"Effect":"Allow","Principal":"someone","Action":"ecr:*"}]}"#, "Principal"),
            (r#"{"Statement":[{"Effect":"Allow","Principal":"*"}]}"#, "Action"),
            (r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":[]}]}"#, "Action"),
            (r#"{"Statement":["x"]}"#, "must be an object"),
        ] {
            let err = validate(text).expect_err(text);
            assert!(err.0.contains(says), "{text}: {err}");
        }
        let long = format!(
            r#"{{"Statement":[{{"Effect":"Allow","Principal":"*","Action":"ecr:*","Sid":"{}"}}]}}"#,
            "a".repeat(MAX_POLICY_LENGTH)
        );
        assert!(validate(&long).unwrap_err().0.contains("longer than 10240"));
    }
}
