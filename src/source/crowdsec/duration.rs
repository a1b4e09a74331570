//! Go's `time.Duration` text (`1h59m58.287193418s`, `-15.130903ms`, `59m58.8s`), the form in
//! which a CrowdSec LAPI gives a decision's remaining duration.
//!
//! This module only parses text; it must never read the clock.

/// Seconds of a Go duration string, or `None` when it is not one. Negative durations (an
/// expired decision in `deleted`) come back negative.
pub fn parse_go_duration(text: &str) -> Option<f64> {
    let t = text.trim();
    let (neg, mut rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&i| i > 0)?;
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    total
        .is_finite()
        .then_some(if neg { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::parse_go_duration as p;

    #[test]
    fn go_durations_as_the_lapi_writes_them() {
        // Measured against CrowdSec 1.4.6.
        let d = p("1h59m58.287193418s").unwrap();
        assert!((d - 7198.287193418).abs() < 1e-6);
        assert!((p("59m58.872848912s").unwrap() - 3598.872848912).abs() < 1e-6);
        assert!((p("-15.130903ms").unwrap() + 0.015130903).abs() < 1e-9);
        assert_eq!(p("4h"), Some(14_400.0));
        assert_eq!(p("0"), Some(0.0));
        assert_eq!(p("1.5µs"), Some(1.5e-6));
        for bad in ["", "h", "1x", "1h-2m", "--1s", "1..2s", "s1"] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }
}
