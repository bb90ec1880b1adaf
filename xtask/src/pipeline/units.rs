//! Quantities written with units in pipeline.yaml: durations (`500ms`, `60s`,
//! `2m`, `1h`), memory (`128Mi`, `1Gi`, `512M`, bytes when bare) and cpu
//! (`0.5`, `1`, `500m`). An error completes "`<text>` ...": "has no unit".

use std::time::Duration;

/// Parse `<whole number><unit>` with unit `ms`, `s`, `m` or `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text);
    let value: u64 = number
        .parse()
        .map_err(|_| "is not a whole number with a unit".to_string())?;
    let millis = match unit {
        "ms" => Some(value),
        "s" => value.checked_mul(1_000),
        "m" => value.checked_mul(60_000),
        "h" => value.checked_mul(3_600_000),
        "" => return Err("has no unit".to_string()),
        _ => return Err(format!("has an unknown unit `{unit}`")),
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| "is too large".to_string())
}

/// Write a duration the way pipeline.yaml does: `700s`, `500ms`, `1500ms`.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1_000) {
        format!("{}s", millis / 1_000)
    } else {
        format!("{millis}ms")
    }
}

/// Parse a memory quantity into bytes: `Ki Mi Gi Ti` (powers of 1024),
/// `k M G T` (powers of 1000), bytes when bare.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text);
    let value: u64 = number
        .parse()
        .map_err(|_| "is not a whole number with a unit".to_string())?;
    let scale: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return Err(format!("has an unknown unit `{unit}`")),
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| "is too large".to_string())
}

/// Bytes to whole MiB, rounded up so that any non-zero size is at least 1.
pub fn bytes_to_mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

/// Parse cpu cores: a number (`0.5`, `2`) or millicores (`500m`).
pub fn parse_cpu(text: &str) -> Result<f64, String> {
    let parsed = match text.strip_suffix('m') {
        Some(millis) => millis.parse::<f64>().ok().map(|millis| millis / 1_000.0),
        None => text.parse::<f64>().ok(),
    };
    parsed
        .filter(|cpu| cpu.is_finite())
        .ok_or_else(|| "is not a number of cores".to_string())
}

fn split_number(text: &str) -> (&str, &str) {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_reject_missing_or_unknown_units() {
        assert_eq!(parse_duration("60"), Err("has no unit".into()));
        assert_eq!(parse_duration("60x"), Err("has an unknown unit `x`".into()));
        assert_eq!(
            parse_duration("1.5s"),
            Err("has an unknown unit `.5s`".into())
        );
        assert_eq!(
            parse_duration("s"),
            Err("is not a whole number with a unit".into())
        );
        assert_eq!(
            parse_duration("-1s"),
            Err("is not a whole number with a unit".into())
        );
        assert!(parse_duration("99999999999999999h").is_err());
    }

    #[test]
    fn durations_format_as_written() {
        assert_eq!(format_duration(Duration::from_secs(660)), "660s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn memory_parses_binary_and_decimal_units() {
        assert_eq!(parse_memory("128Mi"), Ok(128 << 20));
        assert_eq!(parse_memory("1Gi"), Ok(1 << 30));
        assert_eq!(parse_memory("512M"), Ok(512_000_000));
        assert_eq!(parse_memory("64Ki"), Ok(64 << 10));
        assert_eq!(parse_memory("4096"), Ok(4096));
        assert_eq!(bytes_to_mib(128 << 20), 128);
        assert_eq!(bytes_to_mib(512_000_000), 489);
        assert_eq!(bytes_to_mib(1), 1);
        assert_eq!(bytes_to_mib(0), 0);
    }

    #[test]
    fn memory_rejects_unknown_units() {
        assert_eq!(
            parse_memory("128MB"),
            Err("has an unknown unit `MB`".into())
        );
        assert_eq!(
            parse_memory("Mi"),
            Err("is not a whole number with a unit".into())
        );
        assert!(parse_memory("99999999999Ti").is_err());
    }

    #[test]
    fn cpu_parses_cores_and_millicores() {
        assert_eq!(parse_cpu("0.5"), Ok(0.5));
        assert_eq!(parse_cpu("2"), Ok(2.0));
        assert_eq!(parse_cpu("500m"), Ok(0.5));
        assert_eq!(parse_cpu("-1"), Ok(-1.0));
        assert_eq!(parse_cpu("-500m"), Ok(-0.5));
        assert!(parse_cpu("fast").is_err());
        assert!(parse_cpu("inf").is_err());
    }
}
