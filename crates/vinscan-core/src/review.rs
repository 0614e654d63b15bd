//! Review routing: which records need a person, decided from their checks and field
//! confidences by the pipeline's `[review]` rules, with the reasons a reviewer starts from.
//!
//! A failed check needs review by default, a warning does not, and a value a check corrected
//! does (someone should see that the printed value was replaced). A confidence threshold is
//! off unless the pipeline sets one. Review never fails an
//! extraction: exit codes and `failed` stay for errors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vinscan_schema::{CHECK_NAMES, CheckOutcome, CheckStatus};

/// Which checks a rule applies to: `"any"`, `"none"`, or a list of check names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CheckSelection {
    Keyword(SelectionKeyword),
    Only(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectionKeyword {
    Any,
    None,
}

impl CheckSelection {
    fn selects(&self, check: &str) -> bool {
        match self {
            Self::Keyword(SelectionKeyword::Any) => true,
            Self::Keyword(SelectionKeyword::None) => false,
            Self::Only(names) => names.iter().any(|n| n == check),
        }
    }

    fn unknown_names(&self) -> Vec<&str> {
        match self {
            Self::Only(names) => names
                .iter()
                .map(String::as_str)
                .filter(|n| !CHECK_NAMES.contains(n))
                .collect(),
            Self::Keyword(_) => Vec::new(),
        }
    }
}

/// A pipeline's `[review]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewRules {
    /// Checks whose `fail` needs review (default `"any"`).
    pub failed_checks: CheckSelection,
    /// Checks whose `warn` needs review (default `"none"`).
    pub warned_checks: CheckSelection,
    /// Whether a value a check replaced needs review (default `true`).
    pub corrections: bool,
    /// A field whose confidence is below this needs review (default: none).
    pub min_confidence: Option<f64>,
}

impl Default for ReviewRules {
    fn default() -> Self {
        Self {
            failed_checks: CheckSelection::Keyword(SelectionKeyword::Any),
            warned_checks: CheckSelection::Keyword(SelectionKeyword::None),
            corrections: true,
            min_confidence: None,
        }
    }
}

impl ReviewRules {
    /// Refuses check names no schema can declare (a typo would silently never match).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(m) = self.min_confidence
            && !(0.0..=1.0).contains(&m)
        {
            return Err(format!("review.min_confidence must be within 0..=1, got {m}"));
        }
        let unknown: Vec<&str> = [&self.failed_checks, &self.warned_checks]
            .into_iter()
            .flat_map(CheckSelection::unknown_names)
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "review: unknown check names {unknown:?} (known: {})",
                CHECK_NAMES.join(", ")
            ))
        }
    }

    /// The verdict on one record's checks and field confidences (JSON Pointer → [0, 1]).
    pub fn decide(&self, outcome: &CheckOutcome, confidence: &BTreeMap<String, f64>) -> Review {
        let mut reasons = Vec::new();
        if let Some(min) = self.min_confidence {
            reasons.extend(
                confidence
                    .iter()
                    .filter(|(_, c)| **c < min)
                    .map(|(pointer, _)| ReviewReason {
                        kind: ReasonKind::LowConfidence,
                        pointer: pointer.clone(),
                        check: "confidence".to_owned(),
                    }),
            );
        }
        for c in &outcome.checks {
            let kind = match c.status {
                CheckStatus::Fail if self.failed_checks.selects(&c.check) => ReasonKind::CheckFailed,
                CheckStatus::Warn if self.warned_checks.selects(&c.check) => ReasonKind::CheckWarned,
                _ => continue,
            };
            reasons.push(ReviewReason {
                kind,
                pointer: c.pointer.clone(),
                check: c.check.clone(),
            });
        }
        if self.corrections {
            reasons.extend(outcome.corrections.iter().map(|c| ReviewReason {
                kind: ReasonKind::Corrected,
                pointer: c.pointer.clone(),
                check: c.source.clone(),
            }));
        }
        Review {
            needed: !reasons.is_empty(),
            reasons,
        }
    }
}

/// A record's review verdict: `{"needed", "reasons"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub needed: bool,
    pub reasons: Vec<ReviewReason>,
}

/// One thing a reviewer should look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewReason {
    pub kind: ReasonKind,
    /// JSON Pointer into the record's `data`.
    pub pointer: String,
    /// The check that raised it (for a correction, the check whose evidence was used;
    /// `confidence` for a low confidence).
    pub check: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonKind {
    CheckFailed,
    CheckWarned,
    Corrected,
    /// The field's confidence is below `min_confidence`.
    LowConfidence,
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vinscan_schema::{CheckResult, Correction};

    use super::*;

    fn outcome() -> CheckOutcome {
        let check = |pointer: &str, check: &str, status| CheckResult {
            pointer: pointer.into(),
            check: check.into(),
            status,
            detail: String::new(),
        };
        CheckOutcome {
            checks: vec![
                check("/seller/tax_code", "mst", CheckStatus::Fail),
                check("/vat_rate", "vat-rate", CheckStatus::Warn),
                check("/total", "invoice-totals", CheckStatus::Pass),
                check("/issue_date", "date", CheckStatus::Skipped),
                check("/items/0/amount", "line-amount", CheckStatus::Fail),
            ],
            corrections: vec![Correction {
                pointer: "/date_of_birth".into(),
                printed: json!("1999-08-13"),
                kept: json!("1999-03-13"),
                source: "mrz".into(),
                evidence: "/mrz".into(),
            }],
        }
    }

    fn rules(toml_text: &str) -> ReviewRules {
        toml::from_str(toml_text).expect("rules parse")
    }

    fn verdict(r: &ReviewRules, o: &CheckOutcome) -> (bool, Vec<(ReasonKind, String)>) {
        let v = r.decide(o, &BTreeMap::new());
        (
            v.needed,
            v.reasons.into_iter().map(|r| (r.kind, r.pointer)).collect(),
        )
    }

    #[test]
    fn by_default_failures_and_corrections_need_review() {
        let (needed, reasons) = verdict(&ReviewRules::default(), &outcome());
        assert!(needed);
        assert_eq!(
            reasons,
            vec![
                (ReasonKind::CheckFailed, "/seller/tax_code".into()),
                (ReasonKind::CheckFailed, "/items/0/amount".into()),
                (ReasonKind::Corrected, "/date_of_birth".into()),
            ]
        );
    }

    #[test]
    fn rules_choose_which_checks_count() {
        let r = rules("failed_checks = [\"mst\"]\nwarned_checks = \"any\"\ncorrections = false");
        let (needed, reasons) = verdict(&r, &outcome());
        assert!(needed);
        assert_eq!(
            reasons,
            vec![
                (ReasonKind::CheckFailed, "/seller/tax_code".into()),
                (ReasonKind::CheckWarned, "/vat_rate".into()),
            ]
        );
        let none = rules("failed_checks = \"none\"\ncorrections = false");
        assert_eq!(verdict(&none, &outcome()), (false, vec![]));
    }

    #[test]
    fn a_clean_record_needs_no_review() {
        let clean = CheckOutcome {
            checks: outcome()
                .checks
                .into_iter()
                .filter(|c| c.status == CheckStatus::Pass)
                .collect(),
            corrections: vec![],
        };
        assert_eq!(verdict(&ReviewRules::default(), &clean), (false, vec![]));
        assert_eq!(
            verdict(&ReviewRules::default(), &CheckOutcome::default()),
            (false, vec![])
        );
    }

    #[test]
    fn fields_below_the_confidence_threshold_need_review() {
        let confidence: BTreeMap<String, f64> =
            [("/a".into(), 0.95), ("/b".into(), 0.42), ("/c/0".into(), 0.7)]
                .into_iter()
                .collect();
        let r = rules("min_confidence = 0.8");
        let v = r.decide(&CheckOutcome::default(), &confidence);
        let got: Vec<(ReasonKind, &str)> = v.reasons.iter().map(|r| (r.kind, r.pointer.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (ReasonKind::LowConfidence, "/b"),
                (ReasonKind::LowConfidence, "/c/0")
            ]
        );
        assert!(v.needed);
        let off = ReviewRules::default().decide(&CheckOutcome::default(), &confidence);
        assert!(!off.needed, "no threshold by default");
        assert!(rules("min_confidence = 1.5").validate().is_err());
    }

    #[test]
    fn unknown_check_names_and_keys_are_refused() {
        let typo = rules("failed_checks = [\"mst\", \"msst\"]");
        let e = typo.validate().expect_err("refused");
        assert!(e.contains("msst"), "{e}");
        assert!(toml::from_str::<ReviewRules>("failed = \"any\"").is_err());
        assert!(toml::from_str::<ReviewRules>("failed_checks = \"some\"").is_err());
        assert!(
            rules("warned_checks = [\"vat-rate\", \"cccd\"]")
                .validate()
                .is_ok()
        );
    }
}
