//! Printing a [`Report`]: text for a person (one line per check with a mark, the fix on the
//! next line, a closing verdict) or one JSON object for scripts.

use std::io::IsTerminal;

use serde_json::json;

use super::{CheckId, Report, Status};

/// Colour only on a terminal, and never when `NO_COLOR` is set to anything but "" (no-color.org).
#[must_use]
pub fn use_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn mark(status: Status) -> (&'static str, &'static str) {
    match status {
        Status::Pass => ("✓", "32"),
        Status::Fail => ("✗", "31"),
        Status::Warn => ("!", "33"),
        Status::Skip => ("-", "2"),
    }
}

fn paint(colour: bool, code: &str, text: &str) -> String {
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

pub(super) fn text(r: &Report, colour: bool) -> String {
    let width = CheckId::ALL
        .iter()
        .map(|c| c.as_str().len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for c in &r.checks {
        let (m, code) = mark(c.status);
        out.push_str(&format!(
            "{} {:<width$}  {}\n",
            paint(colour, code, m),
            c.id.as_str(),
            c.summary
        ));
        if let Some(fix) = &c.fix {
            let label = if c.status == Status::Skip {
                "to run it"
            } else {
                "fix"
            };
            out.push_str(&format!("  {:<width$}  {label}: {fix}\n", ""));
        }
    }
    out.push_str(&verdict(r, colour));
    out
}

fn ids(r: &Report, status: Status) -> Vec<&'static str> {
    r.checks
        .iter()
        .filter(|c| c.status == status)
        .map(|c| c.id.as_str())
        .collect()
}

fn verdict(r: &Report, colour: bool) -> String {
    let failed = ids(r, Status::Fail);
    let warned = ids(r, Status::Warn);
    let skipped = ids(r, Status::Skip);
    let mut extra = String::new();
    if !warned.is_empty() {
        extra.push_str(&format!("; warnings: {}", warned.join(", ")));
    }
    if !skipped.is_empty() {
        extra.push_str(&format!("; skipped: {}", skipped.join(", ")));
    }
    let line = if r.ok() {
        paint(colour, "32", "OK")
            + &format!(": SES accepts these credentials (235) and no check failed{extra}")
    } else if failed.is_empty() {
        paint(colour, "31", "NOT OK")
            + &format!(": no check failed, but the login could not be tried{extra}")
    } else {
        paint(colour, "31", "NOT OK")
            + &format!(
                ": {} failed ({}); start with the fix for {}{extra}",
                if failed.len() == 1 {
                    "1 check".to_owned()
                } else {
                    format!("{} checks", failed.len())
                },
                failed.join(", "),
                failed[0]
            )
    };
    line + "\n"
}

pub(super) fn json(r: &Report) -> String {
    let checks: Vec<_> = r
        .checks
        .iter()
        .map(|c| {
            json!({
                "id": c.id.as_str(),
                "status": c.status.as_str(),
                "summary": c.summary,
                "fix": c.fix,
            })
        })
        .collect();
    json!({"ok": r.ok(), "checks": checks}).to_string()
}

#[cfg(test)]
mod tests {
    use super::super::Check;
    use super::*;

    fn sample() -> Report {
        Report {
            checks: vec![
                Check::pass(CheckId::Document, "fine"),
                Check::fail(CheckId::Username, "ASIA", "use AKIA"),
                Check::skip(CheckId::Auth, "not tried"),
                Check::warn(CheckId::UrlEncoding, "has +", "encode"),
            ],
        }
    }

    #[test]
    fn text_has_one_line_per_check_a_fix_line_and_a_verdict() {
        let t = text(&sample(), false);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("✓ document"), "{t}");
        assert!(lines[1].starts_with("✗ username"), "{t}");
        assert!(lines[2].contains("fix: use AKIA"), "{t}");
        assert!(lines[3].starts_with("- auth"), "{t}");
        assert!(lines[4].starts_with("! url-encoding"), "{t}");
        assert!(
            lines[6].starts_with("NOT OK: 1 check failed (username)"),
            "{t}"
        );
        assert!(!t.contains('\x1b'));
        assert!(text(&sample(), true).contains("\x1b[31m✗\x1b[0m"));
    }

    #[test]
    fn json_has_the_design_shape() {
        let v: serde_json::Value = serde_json::from_str(&json(&sample())).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["checks"][1]["id"], "username");
        assert_eq!(v["checks"][1]["status"], "fail");
        assert_eq!(v["checks"][1]["fix"], "use AKIA");
        assert_eq!(v["checks"][0]["fix"], serde_json::Value::Null);
        assert_eq!(v.as_object().unwrap().len(), 2);
        assert_eq!(v["checks"][2].as_object().unwrap().len(), 4);
    }
}
