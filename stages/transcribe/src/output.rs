//! Reads what `pocketsphinx_continuous -time yes` prints on stdout.
//!
//! For each utterance it prints the hypothesis on one line, then one line per segment:
//! `word start_s end_s posterior`, e.g. `to(3) 8.070 8.180 0.645745`. Segments include
//! fillers (`<s>`, `</s>`, `<sil>`, `[NOISE]`, `++...++`) and pronunciation variants (`(3)`).

use anyhow::{bail, ensure, Result};

use crate::{Transcript, Word};

/// Parses the decoder's stdout into the words that were said, in order.
///
/// A hypothesis without segment lines means `-time yes` was not given: that is an error,
/// as is a segment with a negative, reversed or non-finite time. Output with no
/// utterance (silence) is an empty transcript.
pub fn parse(stdout: &str) -> Result<Transcript> {
    let mut words = Vec::new();
    let mut untimed: Option<&str> = None;
    for (number, line) in stdout.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((token, start_s, end_s, posterior)) = segment(line) else {
            ensure!(untimed.is_none(), "{}", no_times(untimed.unwrap_or_default()));
            untimed = Some(line);
            continue;
        };
        untimed = None;
        if !(start_s.is_finite() && end_s.is_finite() && 0.0 <= start_s && start_s <= end_s) {
            bail!("line {}: `{line}` has an invalid time span", number + 1);
        }
        if is_filler(token) {
            continue;
        }
        words.push(Word { word: strip_variant(token).to_string(), start_s, end_s, confidence: Some(posterior) });
    }
    if let Some(hypothesis) = untimed {
        bail!("{}", no_times(hypothesis));
    }
    let text = words.iter().map(|w| w.word.as_str()).collect::<Vec<_>>().join(" ");
    Ok(Transcript { text, words })
}

/// `word start end posterior`, the times and posterior printed with a decimal point.
fn segment(line: &str) -> Option<(&str, f64, f64, f64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [token, rest @ ..] = fields.as_slice() else { return None };
    let numbers: Vec<f64> = rest.iter().filter(|f| f.contains('.')).filter_map(|f| f.parse().ok()).collect();
    match numbers.as_slice() {
        [start, end, posterior] if rest.len() == 3 => Some((token, *start, *end, *posterior)),
        _ => None,
    }
}

/// Silence, sentence marks and noise: `<s>`, `</s>`, `<sil>`, `[NOISE]`, `++BREATH++`.
fn is_filler(token: &str) -> bool {
    token.starts_with(['<', '[', '+'])
}

/// `word(2)` is the second pronunciation of `word`.
fn strip_variant(token: &str) -> &str {
    match token.strip_suffix(')').and_then(|t| t.rsplit_once('(')) {
        Some((word, variant)) if !word.is_empty() && variant.bytes().all(|b| b.is_ascii_digit()) => word,
        _ => token,
    }
}

fn no_times(hypothesis: &str) -> String {
    format!("hypothesis `{hypothesis}` has no word times: run pocketsphinx_continuous with `-time yes`")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from `pocketsphinx_continuous -infile clip.wav -time yes` on 11 s of espeak-ng
    /// speech cut from the xtask test video (speech starts about 2.2 s in).
    const CLIP: &str = include_str!("../testdata/clip-two-sentences.txt");
    /// Captured from the whole 40 s test video track: four utterances split by 2.5 s pauses.
    const FOUR_UTTERANCES: &str = include_str!("../testdata/four-utterances.txt");

    #[test]
    fn captured_clip_gives_words_in_order_with_times() {
        let t = parse(CLIP).unwrap();
        assert_eq!(
            t.text,
            "the house is on the left side of the roads i would like a glass of water please \
             i will calculate it tonight i need to buy some food can you tell me what time it is"
        );
        assert_eq!(t.words.len(), 37);
        assert_eq!(t.words[0], Word { word: "the".into(), start_s: 2.22, end_s: 2.34, confidence: Some(0.862071) });
        let last = t.words.last().unwrap();
        assert_eq!((last.word.as_str(), last.start_s, last.end_s), ("is", 10.46, 10.75));
        assert!(t.words.windows(2).all(|w| w[0].end_s <= w[1].start_s), "words overlap");
    }

    #[test]
    fn pronunciation_variant_is_stripped() {
        let t = parse(CLIP).unwrap();
        let to = t.words.iter().find(|w| w.start_s == 8.07).unwrap();
        assert_eq!(to.word, "to");
    }

    #[test]
    fn fillers_and_sentence_marks_are_dropped() {
        let t = parse(FOUR_UTTERANCES).unwrap();
        assert!(!t.words.is_empty(), "no words parsed from the capture");
        assert!(t.words.iter().all(|w| w.word.chars().all(|c| c.is_ascii_lowercase() || c == '\'')), "{}", t.text);
        // Each hypothesis line equals its utterance's words (hypotheses carry no variants).
        let hypotheses: Vec<&str> = FOUR_UTTERANCES.lines().filter(|l| segment(l).is_none()).collect();
        assert_eq!(hypotheses.len(), 4);
        assert_eq!(t.text, hypotheses.join(" "));
    }

    #[test]
    fn utterances_keep_absolute_times() {
        let t = parse(FOUR_UTTERANCES).unwrap();
        let presidents = t.words.iter().find(|w| w.word == "president" || w.word == "residents").unwrap();
        assert!(presidents.start_s > 30.0, "{presidents:?}");
        assert!(t.words.len() > 30, "{} words parsed from the four utterances", t.words.len());
        assert!(t.words.windows(2).all(|w| w[0].start_s < w[1].start_s));
    }

    #[test]
    fn noise_markers_and_hypothesis_without_line_are_handled() {
        let out = "\
<s> 0.100 0.200 1.000000
[NOISE] 0.210 0.400 0.500000
++BREATH++ 0.410 0.500 0.500000
hello 0.510 0.900 0.750000
world(2) 0.910 1.300 0.250000
</s> 1.310 1.500 1.000000
";
        let t = parse(out).unwrap();
        assert_eq!(t.text, "hello world");
        assert_eq!(t.words[1], Word { word: "world".into(), start_s: 0.91, end_s: 1.3, confidence: Some(0.25) });
    }

    #[test]
    fn silence_gives_an_empty_transcript() {
        assert_eq!(parse("").unwrap(), Transcript { text: String::new(), words: vec![] });
        assert_eq!(parse("\n<s> 0.000 0.500 1.000000\n</s> 0.510 0.900 1.000000\n").unwrap().words, vec![]);
    }

    #[test]
    fn hypothesis_without_times_is_an_error() {
        let err = parse("the cat sat on the mat\n").unwrap_err().to_string();
        assert!(err.contains("`the cat sat on the mat` has no word times") && err.contains("-time yes"), "{err}");
        let err = parse("one utterance\nanother one\ntwo 0.100 0.200 1.0\n").unwrap_err().to_string();
        assert!(err.contains("`one utterance`"), "{err}");
    }

    #[test]
    fn reversed_time_span_is_an_error() {
        let err = parse("hi\nhi 2.000 1.000 0.5\n").unwrap_err().to_string();
        assert_eq!(err, "line 2: `hi 2.000 1.000 0.5` has an invalid time span");
    }

    #[test]
    fn variant_stripping_keeps_other_parentheses() {
        assert_eq!(strip_variant("to(3)"), "to");
        assert_eq!(strip_variant("(3)"), "(3)");
        assert_eq!(strip_variant("a(b)"), "a(b)");
        assert_eq!(strip_variant("plain"), "plain");
    }
}
