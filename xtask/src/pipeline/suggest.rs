//! "did you mean ...?" for misspelt names.

/// The candidate closest to `name`, when it is close enough to be a likely typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| {
            (
                strsim::normalized_damerau_levenshtein(name, candidate),
                candidate,
            )
        })
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let keys = ["source", "memory", "timeout", "max_inflight"];
        assert_eq!(closest("timeot", keys), Some("timeout"));
        assert_eq!(closest("memroy", keys), Some("memory"));
        assert_eq!(closest("colour", keys), None);
    }
}
