//! Sizes and durations as people write them in manifests and on the command
//! line: `64KiB`, `64MiB`, `1GiB`; `500ms`, `2s`, `1m`. The same forms are
//! accepted everywhere, so a value copied from a manifest works as a flag.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A number of bytes, written with a binary unit (`B`, `KiB`, `MiB`, `GiB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

/// A span of time, written with a unit (`ms`, `s`, `m`, `h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeSpan(pub Duration);

/// A value that is not a size or duration in the accepted forms.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} `{input}`: write it like {examples}")]
pub struct UnitError {
    kind: &'static str,
    input: String,
    examples: &'static str,
}

const SIZE_UNITS: [(&str, u64); 4] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1)];
const TIME_UNITS: [(&str, u64); 4] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];

/// Splits `64MiB` into `64` and `MiB`, requiring both parts.
fn split_number(input: &str) -> Option<(u64, &str)> {
    let input = input.trim();
    let digits = input.find(|c: char| !c.is_ascii_digit()).unwrap_or(input.len());
    let (number, unit) = input.split_at(digits);
    let number = number.parse().ok()?;
    Some((number, unit.trim()))
}

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(input: &str) -> Result<Self, UnitError> {
        let error =
            || UnitError { kind: "size", input: input.to_owned(), examples: "`512B`, `64KiB`, `64MiB` or `1GiB`" };
        let (number, unit) = split_number(input).ok_or_else(error)?;
        let (_, scale) = SIZE_UNITS.iter().find(|(name, _)| *name == unit).ok_or_else(error)?;
        number.checked_mul(*scale).map(ByteSize).ok_or_else(error)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The largest unit that divides the value exactly, so `Display` output
        // parses back to the same number.
        let (name, scale) =
            SIZE_UNITS.iter().find(|(_, scale)| self.0 != 0 && self.0.is_multiple_of(*scale)).unwrap_or(&("B", 1));
        write!(f, "{}{name}", self.0 / scale)
    }
}

impl FromStr for TimeSpan {
    type Err = UnitError;

    fn from_str(input: &str) -> Result<Self, UnitError> {
        let error = || UnitError { kind: "duration", input: input.to_owned(), examples: "`500ms`, `2s`, `1m` or `1h`" };
        let (number, unit) = split_number(input).ok_or_else(error)?;
        let (_, millis) = TIME_UNITS.iter().find(|(name, _)| *name == unit).ok_or_else(error)?;
        number.checked_mul(*millis).map(|ms| TimeSpan(Duration::from_millis(ms))).ok_or_else(error)
    }
}

impl fmt::Display for TimeSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        let (name, scale) = TIME_UNITS
            .iter()
            .rev()
            .find(|(_, scale)| millis != 0 && millis.is_multiple_of(u128::from(*scale)))
            .unwrap_or(&("ms", 1));
        write!(f, "{}{name}", millis / u128::from(*scale))
    }
}

impl From<TimeSpan> for Duration {
    fn from(span: TimeSpan) -> Duration {
        span.0
    }
}

/// Deserializes from a string through `FromStr`, so manifests give the same
/// error text as the command line.
macro_rules! deserialize_from_str {
    ($type:ty) => {
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
deserialize_from_str!(ByteSize);
deserialize_from_str!(TimeSpan);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!("512B".parse(), Ok(ByteSize(512)));
        assert_eq!("64KiB".parse(), Ok(ByteSize(64 << 10)));
        assert_eq!("64MiB".parse(), Ok(ByteSize(64 << 20)));
        assert_eq!("1GiB".parse(), Ok(ByteSize(1 << 30)));
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
        assert_eq!(ByteSize(1500).to_string(), "1500B");
    }

    #[test]
    fn sizes_without_unit_or_with_unknown_unit_are_refused() {
        for bad in ["64", "64MB", "MiB", "-1KiB", "1.5GiB", "", "99999999999999999999GiB"] {
            let error = bad.parse::<ByteSize>().unwrap_err();
            assert!(error.to_string().contains("64MiB"), "{error}");
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!("500ms".parse(), Ok(TimeSpan(Duration::from_millis(500))));
        assert_eq!("2s".parse(), Ok(TimeSpan(Duration::from_secs(2))));
        assert_eq!("1m".parse(), Ok(TimeSpan(Duration::from_secs(60))));
        assert_eq!("1h".parse(), Ok(TimeSpan(Duration::from_secs(3600))));
        assert_eq!(TimeSpan(Duration::from_secs(120)).to_string(), "2m");
        assert_eq!(TimeSpan(Duration::from_millis(1500)).to_string(), "1500ms");
    }

    #[test]
    fn durations_without_unit_are_refused() {
        for bad in ["5", "5 sec", "s", "1d", "-2s"] {
            assert!(bad.parse::<TimeSpan>().is_err(), "{bad} parsed");
        }
    }
}
