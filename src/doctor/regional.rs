//! One check entry from each region's finding, for documents with `regions`.
//!
//! The report keeps one entry per check id (ids and shape are an interface): a check that
//! concerns one region runs for every region of the document and [`combine`] makes one entry
//! of them, each region's finding prefixed `[region]` (the form the rotation's
//! `SmtpRegionsFailed` uses), its status the worst of them. A document without `regions` has
//! one region, reported exactly as before (no prefix).

use super::{Check, CheckId, Status};

/// Worst first: fail, warn, skip (a region that could not be checked is not a pass), pass.
fn rank(s: Status) -> u8 {
    match s {
        Status::Fail => 3,
        Status::Warn => 2,
        Status::Skip => 1,
        Status::Pass => 0,
    }
}

/// One entry for `id` from each region's check, in the document's region order. With
/// `labelled` false (no `regions` field) there is one part, returned as it is.
pub(crate) fn combine(id: CheckId, parts: Vec<(String, Check)>, labelled: bool) -> Check {
    if !labelled && let Some((_, c)) = parts.first() {
        return c.clone();
    }
    if parts.is_empty() {
        return Check::skip(id, "no region to check (see document)");
    }
    let status = parts
        .iter()
        .map(|(_, c)| c.status)
        .max_by_key(|s| rank(*s))
        .unwrap_or(Status::Skip);
    let summary = parts
        .iter()
        .map(|(r, c)| format!("[{r}] {}", c.summary))
        .collect::<Vec<_>>()
        .join("; ");
    let fixes: Vec<String> = parts
        .iter()
        .filter_map(|(r, c)| c.fix.as_ref().map(|f| format!("[{r}] {f}")))
        .collect();
    Check {
        id,
        status,
        summary,
        fix: (!fixes.is_empty()).then(|| fixes.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_region_is_unchanged_and_several_are_named() {
        let pass = Check::pass(CheckId::Auth, "235: a accepted");
        assert_eq!(
            combine(
                CheckId::Auth,
                vec![("us-east-1".into(), pass.clone())],
                false
            ),
            pass
        );
        let fail = Check::fail(CheckId::Auth, "535 from b", "derive it");
        let skip = Check::skip(CheckId::Auth, "not tried");
        for (parts, status) in [
            (vec![pass.clone(), pass.clone()], Status::Pass),
            (vec![pass.clone(), fail.clone()], Status::Fail),
            (vec![skip.clone(), fail.clone()], Status::Fail),
            (vec![pass.clone(), skip.clone()], Status::Skip),
        ] {
            let named: Vec<(String, Check)> = ["us-east-1", "eu-west-1"]
                .iter()
                .map(|r| (*r).to_owned())
                .zip(parts)
                .collect();
            let c = combine(CheckId::Auth, named, true);
            assert_eq!(c.status, status, "{c:?}");
            assert!(c.summary.starts_with("[us-east-1] "), "{c:?}");
            assert!(c.summary.contains("; [eu-west-1] "), "{c:?}");
            if status == Status::Fail {
                assert_eq!(c.fix.as_deref(), Some("[eu-west-1] derive it"));
            }
        }
        // A labelled document with one region (`"regions": []`) still names it.
        let c = combine(CheckId::Auth, vec![("us-east-1".into(), pass)], true);
        assert_eq!(c.summary, "[us-east-1] 235: a accepted");
    }
}
