//! Human-readable sizes and durations for the command line: `8MiB`, `1GiB`, `512k`,
//! `5242880`; `90s`, `30m`, `24h`, `7d`.

/// Parses a size such as `8MiB`, `1GiB`, `512k`, `64M` or a plain byte count.
///
/// Binary units only (`k`/`KiB` = 1024): part sizes and memory budgets are powers of two
/// in practice, and users of s3fs and Mountpoint already write them that way.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "invalid size '{text}': expected a number with an optional unit such as 8MiB, 1GiB or 512k"
        ));
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size '{text}': number too large"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "invalid size '{text}': unknown unit '{other}' (use k, MiB, GiB or TiB)"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("invalid size '{text}': too large"))
}

/// Formats a byte count for log lines and error messages.
pub(crate) fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, unit) in UNITS {
        if bytes >= unit {
            if bytes.is_multiple_of(unit) {
                return format!("{}{name}", bytes / unit);
            }
            return format!("{:.1}{name}", bytes as f64 / unit as f64);
        }
    }
    format!("{bytes}B")
}

/// Parses `90s`, `30m`, `24h`, `7d` (a bare number is seconds).
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("invalid duration '{text}': expected e.g. 90s, 30m, 24h or 7d"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => {
            return Err(format!(
                "invalid duration '{text}': unit must be s, m, h or d"
            ));
        }
    };
    number
        .checked_mul(seconds)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("invalid duration '{text}': too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_minutes_hours_and_days() {
        assert_eq!(parse_duration("90s").map(|d| d.as_secs()), Ok(90));
        assert_eq!(parse_duration("24h").map(|d| d.as_secs()), Ok(86_400));
        assert_eq!(parse_duration("7d").map(|d| d.as_secs()), Ok(604_800));
        assert_eq!(parse_duration("5").map(|d| d.as_secs()), Ok(5));
        assert!(parse_duration("1w").unwrap_err().contains("unit"));
        assert!(parse_duration("h").unwrap_err().contains("expected"));
    }

    #[test]
    fn accepts_binary_units_in_several_spellings() {
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("5242880"), Ok(5_242_880));
        assert_eq!(parse_size("2gb"), Ok(2 << 30));
    }

    #[test]
    fn rejects_garbage_with_a_readable_reason() {
        assert!(parse_size("").unwrap_err().contains("expected a number"));
        assert!(parse_size("MiB").unwrap_err().contains("expected a number"));
        assert!(parse_size("8XB").unwrap_err().contains("unknown unit"));
        assert!(
            parse_size("99999999999999999999")
                .unwrap_err()
                .contains("too large")
        );
        assert!(parse_size("99999999T").unwrap_err().contains("too large"));
    }

    #[test]
    fn formats_round_and_fractional_sizes() {
        assert_eq!(format_size(8 << 20), "8MiB");
        assert_eq!(format_size(1536 << 20), "1.5GiB");
        assert_eq!(format_size(100), "100B");
    }
}
