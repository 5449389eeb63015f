//! Wildcard matching, the one copy for the whole server: IAM's `*`/`?` in actions, resources and
//! `...Like` conditions, and ECR's `*`-only tag filters (tag mutability exclusions, lifecycle
//! `tagPatternList`).
//!
//! Patterns are compiled to [`Tok`]ens once, so a character that came from a policy variable
//! (`${aws:username}`) or an escape (`${*}`) is literal even if it is `*` or `?`.

/// One compiled pattern element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok {
    Lit(char),
    /// `*`: any run of characters, including none.
    Star,
    /// `?`: exactly one character.
    One,
}

/// `pattern` as tokens: `*` is a wildcard, `?` too when `question_mark` (IAM), else literal (ECR).
pub(crate) fn tokens(pattern: &str, question_mark: bool) -> impl Iterator<Item = Tok> + '_ {
    pattern.chars().map(move |c| match c {
        '*' => Tok::Star,
        '?' if question_mark => Tok::One,
        c => Tok::Lit(c),
    })
}

/// Whether `text` matches `pattern` whole. `fold_ascii` compares letters ASCII-case-insensitively
/// (IAM action names). Greedy with one resume point, the classic algorithm: O(pattern × text) at
/// worst, no recursion, so a hostile pattern cannot blow the stack or run away.
pub(crate) fn glob(pattern: &[Tok], text: &str, fold_ascii: bool) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    while let Some(c) = text[t..].chars().next() {
        match pattern.get(p) {
            Some(Tok::Star) => {
                resume = Some((p, t));
                p += 1;
                continue;
            }
            Some(Tok::One) => {
                p += 1;
                t += c.len_utf8();
                continue;
            }
            Some(Tok::Lit(l)) if *l == c || (fold_ascii && l.eq_ignore_ascii_case(&c)) => {
                p += 1;
                t += c.len_utf8();
                continue;
            }
            _ => {}
        }
        // Mismatch: let the last `*` swallow one more character and retry from there.
        let Some((star, from)) = resume else { return false };
        let swallowed = text[from..].chars().next().map_or(1, char::len_utf8);
        p = star + 1;
        t = from + swallowed;
        resume = Some((star, t));
    }
    pattern[p..].iter().all(|tok| *tok == Tok::Star)
}

/// An ARN has six colon-separated parts; the last (the resource) may itself contain colons.
const ARN_PARTS: usize = 6;

/// IAM's ARN matching (`Resource`, `ArnLike`): each colon-separated part is matched on its own,
/// with `*`/`?` inside it, case-sensitively; and, as IAM documents, a `*` that ends a part "can
/// expand to match beyond the colon boundaries", i.e. swallow whole further parts
/// (`arn:aws:ecr:*` matches every ECR ARN). `*` alone matches everything.
pub(crate) fn arn_glob(pattern: &[Tok], text: &str) -> bool {
    let mut text_parts = [""; ARN_PARTS];
    let mut text_len = 0;
    for (i, part) in text.splitn(ARN_PARTS, ':').enumerate() {
        text_parts[i] = part;
        text_len = i + 1;
    }
    let mut pattern_parts: [&[Tok]; ARN_PARTS] = [&[]; ARN_PARTS];
    let mut pattern_len = 0;
    let mut rest = pattern;
    while pattern_len < ARN_PARTS - 1 {
        let Some(colon) = rest.iter().position(|t| *t == Tok::Lit(':')) else { break };
        pattern_parts[pattern_len] = &rest[..colon];
        rest = &rest[colon + 1..];
        pattern_len += 1;
    }
    pattern_parts[pattern_len] = rest;
    pattern_len += 1;

    // The same greedy algorithm as `glob`, one level up: the elements are whole parts, and a
    // part ending in `*` is followed by a wildcard over any number of further text parts.
    #[derive(Clone, Copy, PartialEq)]
    enum Step {
        Part(usize),
        AnyParts,
    }
    let mut steps = [Step::AnyParts; 2 * ARN_PARTS];
    let mut steps_len = 0;
    for (i, part) in pattern_parts[..pattern_len].iter().enumerate() {
        steps[steps_len] = Step::Part(i);
        steps_len += 1;
        if part.last() == Some(&Tok::Star) {
            steps[steps_len] = Step::AnyParts;
            steps_len += 1;
        }
    }
    let steps = &steps[..steps_len];
    let (mut s, mut t) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    while t < text_len {
        match steps.get(s) {
            Some(Step::AnyParts) => {
                resume = Some((s, t));
                s += 1;
                continue;
            }
            Some(Step::Part(i)) if glob(pattern_parts[*i], text_parts[t], false) => {
                s += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        let Some((step, from)) = resume else { return false };
        s = step + 1;
        t = from + 1;
        resume = Some((step, t));
    }
    steps[s..].iter().all(|step| *step == Step::AnyParts)
}

/// ECR's tag wildcard filters: `*` matches any run of characters, everything else is literal,
/// case-sensitive (tag-mutability exclusion filters, lifecycle `tagPatternList`).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    glob(&tokens(pattern, false).collect::<Vec<_>>(), text, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iam(pattern: &str, text: &str) -> bool {
        glob(&tokens(pattern, true).collect::<Vec<_>>(), text, false)
    }

    fn arn(pattern: &str, text: &str) -> bool {
        arn_glob(&tokens(pattern, true).collect::<Vec<_>>(), text)
    }

    #[test]
    fn ecr_tag_filters() {
        for (pattern, text, expected) in [
            ("*", "", true),
            ("v*", "v1.2", true),
            ("sha256-*.sig", "sha256-abc.sig", true),
            ("sha256-*.sig", "sha256-abc.att", false),
            ("a*b*c", "axxbyyc", true),
            ("abc", "abcd", false),
            ("v?", "v?", true),
            ("v?", "v1", false),
            ("", "", true),
            ("", "a", false),
        ] {
            assert_eq!(wildcard_match(pattern, text), expected, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn iam_wildcards() {
        for (pattern, text, expected) in [
            ("ecr:?utImage", "ecr:PutImage", true),
            ("ecr:?utImage", "ecr:utImage", false),
            ("a?c", "aéc", true),
            ("*é", "xxé", true),
            ("a*a*a*a*a*b", &"a".repeat(200), false),
            ("*a*", "bab", true),
        ] {
            assert_eq!(iam(pattern, text), expected, "{pattern} ~ {text}");
        }
        let action = tokens("ECR:putimage", true).collect::<Vec<_>>();
        assert!(glob(&action, "ecr:PutImage", true));
        assert!(!glob(&action, "ecr:PutImage", false));
    }

    #[test]
    fn arns_match_part_by_part() {
        let repo = "arn:aws:ecr:us-east-1:123456789012:repository/team-a/app";
        for (pattern, expected) in [
            ("*", true),
            (repo, true),
            ("arn:aws:ecr:us-east-1:123456789012:repository/team-a/*", true),
            ("arn:aws:ecr:us-east-1:123456789012:repository/team-?/app", true),
            ("arn:aws:ecr:*:*:repository/*", true),
            ("arn:aws:ecr:*:123456789012:*", true),
            // A `*` ending a part swallows further parts…
            ("arn:aws:ecr:*", true),
            ("arn:aws:ecr:us-*:repository/team-a/app", true),
            // …but one inside a part stops at its colon.
            ("arn:aws:ecr:u*1", false),
            ("arn:aws:ecr:us-east-1:123456789012:repository/team-ab*", false),
            ("arn:aws:ecr:us-east-1:123456789012:repository/Team-a/app", false),
            ("arn:aws:ecr:us-east-1:111111111111:repository/*", false),
            ("arn:aws:ecr:us-east-1:123456789012:repository/team-a", false),
            ("arn:aws:ecr:us-east-1:123456789012", false),
        ] {
            assert_eq!(arn(pattern, repo), expected, "{pattern}");
        }
        assert!(!arn(
            "arn:aws:ecr:us-east-1:123456789012:repository/team-a/*",
            "arn:aws:ecr:us-east-1:123456789012:repository/team-ab"
        ));
        assert!(arn("arn:aws:logs:r:1:log-group:x:*", "arn:aws:logs:r:1:log-group:x:stream"));
        // Registry-wide calls name the resource `*`: only `*` (or a pattern that is all
        // wildcards) matches it, not an ARN pattern.
        assert!(arn("*", "*"));
        assert!(!arn("arn:aws:ecr:*:*:*", "*"));
    }
}
