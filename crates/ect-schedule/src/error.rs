//! The one error type of this crate: a parameter or a time grid that the math cannot use.

/// A value that a schedule function cannot work with, named so that a user can find it in a config.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// A scalar parameter is outside its domain (`field` is the config name, e.g. `p_std`).
    #[error("invalid `{field}` = {value}: must be {expected}")]
    InvalidParameter {
        /// The config field or argument name.
        field: &'static str,
        /// The offending value (integers are shown as floats).
        value: f64,
        /// What the value must satisfy, in words.
        expected: &'static str,
    },
    /// A sampling or discretization time grid is malformed.
    #[error("invalid time grid {times:?}: {reason}")]
    InvalidGrid {
        /// The grid as given.
        times: Vec<f64>,
        /// Why it was rejected.
        reason: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = ScheduleError> = std::result::Result<T, E>;

/// Checks `cond` and builds an [`ScheduleError::InvalidParameter`] otherwise.
pub(crate) fn ensure(
    cond: bool,
    field: &'static str,
    value: f64,
    expected: &'static str,
) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(ScheduleError::InvalidParameter {
            field,
            value,
            expected,
        })
    }
}
