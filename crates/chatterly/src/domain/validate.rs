//! Validation helpers producing the reference's full messages
//! ("Content can't be blank", "Name is too long (maximum is 100 characters)").
//! Lengths count characters, not bytes, as the reference does.

/// Collects validation failures so a response lists all of them.
#[derive(Default)]
pub struct Errors(Vec<String>);

impl Errors {
    pub fn add(&mut self, message: impl Into<String>) {
        self.0.push(message.into());
    }

    /// Blank means absent or only whitespace.
    pub fn required<'a>(&mut self, label: &str, value: Option<&'a str>) -> Option<&'a str> {
        match value {
            Some(v) if !v.trim().is_empty() => Some(v),
            _ => {
                self.add(format!("{label} can't be blank"));
                None
            }
        }
    }

    pub fn max_chars(&mut self, label: &str, value: Option<&str>, max: usize) {
        if let Some(v) = value {
            if v.chars().count() > max {
                self.add(format!("{label} is too long (maximum is {max} characters)"));
            }
        }
    }

    pub fn min_chars(&mut self, label: &str, value: Option<&str>, min: usize) {
        if let Some(v) = value {
            if v.chars().count() < min {
                self.add(format!(
                    "{label} is too short (minimum is {min} characters)"
                ));
            }
        }
    }

    pub fn into_result(self) -> Result<(), super::DomainError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(super::DomainError::Invalid(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DomainError;

    #[test]
    fn lists_every_failure_in_the_reference_wording() {
        let mut errors = Errors::default();
        assert_eq!(errors.required("Content", Some("  ")), None);
        errors.max_chars("Name", Some("ééé"), 2);
        errors.min_chars("Username", Some("ab"), 3);
        match errors.into_result() {
            Err(DomainError::Invalid(list)) => assert_eq!(
                list,
                [
                    "Content can't be blank",
                    "Name is too long (maximum is 2 characters)",
                    "Username is too short (minimum is 3 characters)"
                ]
            ),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn counts_characters_not_bytes() {
        let mut errors = Errors::default();
        errors.max_chars("Emoji", Some("👍👍"), 2);
        assert!(errors.into_result().is_ok());
    }
}
