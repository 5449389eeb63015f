//! Three-valued (Kleene) logic: what a statement's parts evaluate to when Berth may not know a
//! value the request has. `Unknown` survives `not`, and `and`/`or` are min/max over
//! `False < Unknown < True`, so every operation is monotone: resolving an `Unknown` either way
//! can only move a result from `Unknown` to a definite value, never flip a definite one.
//! The one place a `Truth` becomes a yes/no is [`Effect::applies`](crate::Effect::applies).

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Truth {
    False,
    Unknown,
    True,
}

impl Truth {
    pub(crate) fn not(self) -> Truth {
        match self {
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
            Truth::True => Truth::False,
        }
    }

    pub(crate) fn and(self, other: Truth) -> Truth {
        self.min(other)
    }

    /// `True` if any is, else `Unknown` if any is, else `False` (also for none); stops at `True`.
    pub(crate) fn any(items: impl IntoIterator<Item = Truth>) -> Truth {
        let mut result = Truth::False;
        for item in items {
            result = result.max(item);
            if result == Truth::True {
                break;
            }
        }
        result
    }

    /// `False` if any is, else `Unknown` if any is, else `True` (also for none); stops at `False`.
    pub(crate) fn all(items: impl IntoIterator<Item = Truth>) -> Truth {
        let mut result = Truth::True;
        for item in items {
            result = result.min(item);
            if result == Truth::False {
                break;
            }
        }
        result
    }
}

impl From<bool> for Truth {
    fn from(value: bool) -> Truth {
        if value { Truth::True } else { Truth::False }
    }
}

#[cfg(test)]
mod tests {
    use super::Truth::{self, *};

    #[test]
    fn kleene_logic() {
        assert_eq!(Unknown.not(), Unknown);
        assert_eq!(True.and(Unknown), Unknown);
        assert_eq!(False.and(Unknown), False);
        assert_eq!(Truth::any([False, Unknown]), Unknown);
        assert_eq!(Truth::any([Unknown, True]), True);
        assert_eq!(Truth::any([]), False);
        assert_eq!(Truth::all([True, Unknown]), Unknown);
        assert_eq!(Truth::all([Unknown, False]), False);
        assert_eq!(Truth::all([]), True);
    }

    /// Monotonicity, exhaustively: replacing an `Unknown` input by `False` or `True` never
    /// changes a definite output.
    #[test]
    fn resolving_unknown_never_flips_a_definite_result() {
        let all = [False, Unknown, True];
        let ops: [fn(Truth, Truth) -> Truth; 4] =
            [|a, b| a.and(b), |a, b| Truth::any([a, b]), |a, b| a.not().and(b), |a, b| Truth::all([a, b.not()])];
        for op in ops {
            for b in all {
                let with_unknown = op(Unknown, b);
                for resolved in [False, True] {
                    if with_unknown != Unknown {
                        assert_eq!(op(resolved, b), with_unknown);
                    }
                }
            }
        }
    }
}
