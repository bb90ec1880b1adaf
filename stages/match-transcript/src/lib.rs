//! VideoSearcher's `grep`: where a clip's transcript says the query.
//!
//! The matching rules (the README quotes them):
//!
//! - **Words.** The query and each transcript word are cut into words the
//!   same way: apostrophes (`'`, `’` U+2019, `ʼ` U+02BC) are removed, so
//!   `don't` is `dont`; every other character that is not a letter or a digit
//!   (Unicode `Alphabetic` or `Numeric`) separates words; each word is then
//!   lower-cased by Unicode's rules, so matching ignores case. There is no
//!   other normalisation: a decomposed accent (`e` + U+0301) separates words.
//! - **Phrase.** The query matches where its words occur as a consecutive run
//!   of the transcript's words; a one-word query matches that word anywhere.
//! - **Whole words.** Words are compared whole, never as substrings: `cat`
//!   does not match `category`.
//! - **Every occurrence.** Each run is a hit. Runs are found from left to
//!   right and do not overlap (as `grep -o`): `ha ha` in `ha ha ha` is one hit.
//! - **Transcript words.** PocketSphinx gives one dictionary word per entry;
//!   an entry that the rules cut into several words (`x-ray`) takes part in a
//!   run by each of them, and a hit names the whole entry with its times. An
//!   entry with no letter or digit takes no part.
//! - **Empty query.** A query with no words (empty, only punctuation or
//!   spaces) is refused: it would match everywhere or nowhere, and neither is
//!   an answer.
//!
//! Times in `match.json` are the transcript's: seconds from the clip's start.

use serde::{Deserialize, Serialize};
use transcribe::Transcript;

/// The apostrophes removed inside words.
pub const APOSTROPHES: [char; 3] = ['\'', '\u{2019}', '\u{02BC}'];

/// The query document the client uploads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    pub query: String,
}

/// `match.json`: the query, the words it was cut into and every hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Match {
    /// The query as the client gave it.
    pub query: String,
    /// The query's words, as compared.
    pub terms: Vec<String>,
    /// At least one hit.
    pub matched: bool,
    pub hits: Vec<Hit>,
}

/// One occurrence of the query: the transcript words it covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// Start of the first word.
    pub start_s: f64,
    /// End of the last word.
    pub end_s: f64,
    pub words: Vec<HitWord>,
}

/// A transcript word, as the transcript spells it, with its times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HitWord {
    pub word: String,
    pub start_s: f64,
    pub end_s: f64,
}

/// A query with no word to look for.
#[derive(Debug, Clone, PartialEq)]
pub struct EmptyQuery(pub String);

impl std::fmt::Display for EmptyQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the query {:?} has no words: it needs at least one letter or digit", self.0)
    }
}

impl std::error::Error for EmptyQuery {}

/// `text` cut into lower-case words by the rules above.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || APOSTROPHES.contains(&c)))
        .map(|word| word.chars().filter(|c| !APOSTROPHES.contains(c)).collect::<String>().to_lowercase())
        .filter(|word| !word.is_empty())
        .collect()
}

/// Every occurrence of `query` in `transcript`.
pub fn find(query: &str, transcript: &Transcript) -> Result<Match, EmptyQuery> {
    let terms = words(query);
    if terms.is_empty() {
        return Err(EmptyQuery(query.to_string()));
    }
    // Each word of the transcript, with the entry it comes from.
    let tokens: Vec<(String, usize)> = transcript
        .words
        .iter()
        .enumerate()
        .flat_map(|(entry, word)| words(&word.word).into_iter().map(move |token| (token, entry)))
        .collect();
    let mut hits = Vec::new();
    let mut at = 0;
    while at + terms.len() <= tokens.len() {
        let run = &tokens[at..at + terms.len()];
        if run.iter().zip(&terms).all(|((token, _), term)| token == term) {
            let (first, last) = (run[0].1, run[run.len() - 1].1);
            let covered = &transcript.words[first..=last];
            hits.push(Hit {
                start_s: covered[0].start_s,
                end_s: covered[covered.len() - 1].end_s,
                words: covered
                    .iter()
                    .map(|w| HitWord { word: w.word.clone(), start_s: w.start_s, end_s: w.end_s })
                    .collect(),
            });
            at += terms.len();
        } else {
            at += 1;
        }
    }
    Ok(Match { query: query.to_string(), terms, matched: !hits.is_empty(), hits })
}

#[cfg(test)]
mod tests {
    use super::*;
    use transcribe::Word;

    /// A transcript of `text`'s entries, 0.5 s each, back to back.
    fn transcript(text: &str) -> Transcript {
        let words: Vec<Word> = text
            .split(' ')
            .filter(|w| !w.is_empty())
            .enumerate()
            .map(|(i, w)| Word {
                word: w.to_string(),
                start_s: i as f64 * 0.5,
                end_s: i as f64 * 0.5 + 0.4,
                confidence: Some(0.9),
            })
            .collect();
        Transcript { text: text.to_string(), words }
    }

    /// The hits as (first entry's word, start, end, words covered).
    fn spans(m: &Match) -> Vec<(f64, f64, Vec<&str>)> {
        m.hits.iter().map(|h| (h.start_s, h.end_s, h.words.iter().map(|w| w.word.as_str()).collect())).collect()
    }

    #[test]
    fn words_follow_the_rules() {
        assert_eq!(words("Glass of WATER"), ["glass", "of", "water"]);
        assert_eq!(words("  don't,stop—now!  "), ["dont", "stop", "now"]);
        assert_eq!(words("it’s 42nd"), ["its", "42nd"]);
        assert_eq!(words("ÉCOLE Straße"), ["école", "straße"]);
        assert_eq!(words("x-ray"), ["x", "ray"]);
        assert!(words("").is_empty());
        assert!(words(" ?!' - ").is_empty());
    }

    #[test]
    fn phrase_matches_a_consecutive_run_only() {
        let t = transcript("i would like a glass of water please a glass and water");
        let m = find("glass of water", &t).unwrap();
        assert_eq!(m.terms, ["glass", "of", "water"]);
        assert!(m.matched);
        assert_eq!(spans(&m), [(2.0, 3.4, vec!["glass", "of", "water"])]);
        assert_eq!(m.hits[0].words[1], HitWord { word: "of".into(), start_s: 2.5, end_s: 2.9 });
        assert!(!find("water glass", &t).unwrap().matched);
    }

    #[test]
    fn one_word_matches_anywhere() {
        let m = find("water", &transcript("water is wet and water flows")).unwrap();
        assert_eq!(spans(&m), [(0.0, 0.4, vec!["water"]), (2.0, 2.4, vec!["water"])]);
    }

    #[test]
    fn case_is_ignored_on_both_sides() {
        let m = find("GLASS Of Water", &transcript("a Glass OF water")).unwrap();
        assert_eq!(spans(&m), [(0.5, 1.9, vec!["Glass", "OF", "water"])]);
        assert_eq!(m.query, "GLASS Of Water");
    }

    #[test]
    fn punctuation_separates_words() {
        let t = transcript("a glass of water");
        for query in ["glass, of water!", "  glass...of\twater ", "\"glass-of-water\""] {
            assert_eq!(spans(&find(query, &t).unwrap()), [(0.5, 1.9, vec!["glass", "of", "water"])], "{query}");
        }
    }

    #[test]
    fn apostrophes_are_removed_inside_words() {
        let t = transcript("i don't know");
        assert!(find("dont know", &t).unwrap().matched);
        assert!(find("DON’T", &t).unwrap().matched);
        assert!(find("'don't'", &t).unwrap().matched);
        assert!(!find("don", &t).unwrap().matched);
        assert!(find("i dont", &transcript("i dont")).unwrap().matched);
    }

    #[test]
    fn never_a_substring() {
        let t = transcript("the category of cats concatenated");
        assert!(!find("cat", &t).unwrap().matched);
        assert!(!find("the cat", &t).unwrap().matched);
        assert!(!find("of cat", &t).unwrap().matched);
        assert!(find("cats", &t).unwrap().matched);
    }

    #[test]
    fn every_occurrence_is_a_hit_without_overlap() {
        let t = transcript("go on go on go");
        assert_eq!(spans(&find("go on", &t).unwrap()).len(), 2);
        let m = find("ha ha", &transcript("ha ha ha ha ha")).unwrap();
        assert_eq!(spans(&m), [(0.0, 0.9, vec!["ha", "ha"]), (1.0, 1.9, vec!["ha", "ha"])]);
    }

    #[test]
    fn an_entry_cut_into_words_is_hit_whole() {
        let m = find("ray", &transcript("an x-ray image")).unwrap();
        assert_eq!(spans(&m), [(0.5, 0.9, vec!["x-ray"])]);
        let m = find("an x", &transcript("an x-ray image")).unwrap();
        assert_eq!(spans(&m), [(0.0, 0.9, vec!["an", "x-ray"])]);
    }

    #[test]
    fn empty_transcript_matches_nothing() {
        let m = find("water", &Transcript { text: String::new(), words: vec![] }).unwrap();
        assert_eq!(m, Match { query: "water".into(), terms: vec!["water".into()], matched: false, hits: vec![] });
    }

    #[test]
    fn a_query_without_words_is_refused() {
        let t = transcript("a glass of water");
        for query in ["", "   ", "?!", "' - '"] {
            assert_eq!(find(query, &t), Err(EmptyQuery(query.to_string())), "{query:?}");
        }
        assert_eq!(
            EmptyQuery("?!".into()).to_string(),
            "the query \"?!\" has no words: it needs at least one letter or digit"
        );
    }

    #[test]
    fn match_json_has_the_documented_shape() {
        let m = find("of", &transcript("glass of")).unwrap();
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"query": "of", "terms": ["of"], "matched": true,
                "hits": [{"start_s": 0.5, "end_s": 0.9, "words": [{"word": "of", "start_s": 0.5, "end_s": 0.9}]}]})
        );
    }

    #[test]
    fn query_document_needs_exactly_query() {
        assert_eq!(serde_json::from_str::<Query>(r#"{"query": "glass"}"#).unwrap().query, "glass");
        assert!(serde_json::from_str::<Query>(r#"{"q": "glass"}"#).is_err());
        assert!(serde_json::from_str::<Query>(r#"{"query": "glass", "limit": 3}"#).is_err());
        assert!(serde_json::from_str::<Query>("glass").is_err());
    }
}
