//! How much of what was spoken a transcript shows: the content words of the
//! speech (stop words such as "the" and "and" dropped) that the transcript
//! has, in the order spoken. A transcript of nothing but "the ... and ... is"
//! shows nothing about the speech, and one without content words fails.
//!
//! `cargo xtask verify` checks every clip of the synthesized test video with
//! it, and so do the tests (this crate's `tests/espeak.rs`, xtask's e2e
//! tests), against the same bound.

use std::fmt;

/// The least share of the content words spoken in a clip of the synthesized
/// test video (`cargo xtask media`) that its transcript must have, in order.
/// Measured on its four clips (PocketSphinx on each, cut at the segments'
/// bounds): 10/15, 15/17, 11/16 and 14/14; half of the lowest, so a worse
/// model or voice still passes and a transcript of stray words does not.
pub const MIN_CLIP_OVERLAP: f64 = 0.33;

/// Words too common to show that speech was recognised.
const STOP_WORDS: [&str; 44] = [
    "a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "at", "for", "with", "by", "from", "as", "is",
    "are", "was", "be", "it", "its", "it's", "i", "you", "he", "she", "we", "they", "me", "my", "his", "her",
    "this", "that", "there", "what", "so", "not", "will", "would", "can", "could", "do",
];

/// Lower-case words of `text` without the stop words.
pub fn content_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphabetic() && c != '\'')
        .map(|w| w.trim_matches('\'').to_ascii_lowercase())
        .filter(|w| !w.is_empty() && !STOP_WORDS.contains(&w.as_str()))
        .collect()
}

/// What was said between `from` and `to` (seconds): the sentences whose
/// middle lies in that span (`spans[i]` is when `sentences[i]` was spoken).
pub fn said_between<'a>(sentences: &'a [String], spans: &[(f64, f64)], from: f64, to: f64) -> Vec<&'a str> {
    sentences
        .iter()
        .zip(spans)
        .filter(|(_, (start, end))| (from..to).contains(&((start + end) / 2.0)))
        .map(|(sentence, _)| sentence.as_str())
        .collect()
}

/// The content words spoken and heard, and how many of the spoken ones the
/// transcript has in order (their longest common subsequence).
#[derive(Debug, Clone, PartialEq)]
pub struct Overlap {
    pub spoken: Vec<String>,
    pub heard: Vec<String>,
    pub matched: usize,
}

impl Overlap {
    pub fn of(spoken: &str, heard: &str) -> Overlap {
        let (spoken, heard) = (content_words(spoken), content_words(heard));
        let mut row = vec![0; heard.len() + 1];
        for s in &spoken {
            let mut diagonal = 0;
            for (j, h) in heard.iter().enumerate() {
                let up = row[j + 1];
                row[j + 1] = if s == h { diagonal + 1 } else { up.max(row[j]) };
                diagonal = up;
            }
        }
        let matched = row[heard.len()];
        Overlap { spoken, heard, matched }
    }

    /// The share of the spoken content words heard; 0 when nothing was spoken.
    pub fn fraction(&self) -> f64 {
        if self.spoken.is_empty() {
            return 0.0;
        }
        self.matched as f64 / self.spoken.len() as f64
    }

    /// Whether something was spoken and at least `min` (0..=1) of its content
    /// words were heard; if not, what is wrong (this overlap's [`Display`]
    /// shows the words).
    ///
    /// [`Display`]: fmt::Display
    pub fn check(&self, min: f64) -> Result<(), String> {
        if self.spoken.is_empty() {
            return Err("no content words in what was spoken, nothing to check".into());
        }
        if self.heard.is_empty() {
            return Err("the transcript has no content words".into());
        }
        if self.fraction() < min {
            return Err(format!("fewer than {:.0}% of the spoken content words heard", min * 100.0));
        }
        Ok(())
    }

    /// Panics, naming `what`, unless [`check`](Overlap::check) passes: for tests.
    pub fn assert_at_least(&self, min: f64, what: &str) {
        if let Err(problem) = self.check(min) {
            panic!("{what}: {problem}\n{self}");
        }
    }
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "overlap: {}/{} spoken content words heard ({:.0}%)", self.matched, self.spoken.len(), self.fraction() * 100.0)?;
        writeln!(f, "spoken:  {}", self.spoken.join(" "))?;
        write!(f, "heard:   {}", self.heard.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::Overlap;

    #[test]
    fn only_content_words_heard_in_order_count() {
        let overlap = Overlap::of("The house is on the left side of the road.", "road the house left side");
        assert_eq!(overlap.spoken, ["house", "left", "side", "road"]);
        // "road" comes last in what was spoken: heard first, it is out of order.
        assert_eq!((overlap.matched, overlap.fraction()), (3, 0.75));
        assert_eq!(overlap.check(0.75), Ok(()));
        assert_eq!(overlap.check(0.8), Err("fewer than 80% of the spoken content words heard".to_string()));
    }

    #[test]
    fn what_was_said_in_a_span_is_the_sentences_centred_in_it() {
        let sentences = ["one house", "two roads", "three glasses"].map(String::from);
        let spans = [(0.0, 2.0), (2.5, 5.5), (6.0, 9.0)];
        // "two roads" (middle 4.0) is in; "three glasses" (middle 7.5) is not, though it began inside.
        assert_eq!(super::said_between(&sentences, &spans, 0.5, 7.0), ["one house", "two roads"]);
        assert!(super::said_between(&sentences, &spans, 9.0, 12.0).is_empty());
    }

    #[test]
    fn nothing_spoken_or_nothing_heard_never_passes() {
        assert!(Overlap::of("the and of", "house").check(0.0).unwrap_err().contains("nothing to check"));
        assert_eq!(Overlap::of("house", "the is of").check(0.0), Err("the transcript has no content words".to_string()));
    }
}
