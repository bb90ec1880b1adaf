//! What a transcript check counts: the content words of what was spoken
//! (stop words such as "the" and "and" dropped) that the transcript has, in
//! the order spoken. A transcript of nothing but "the ... and ... is" shows
//! nothing about the speech, and one without content words fails.
//!
//! Shared by path between the test crates that check transcripts (the
//! transcribe crate's `tests/espeak.rs`, xtask's `tests/it`): the workspace
//! has no test-support crate, and neither can depend on the other's tests.

use std::fmt;

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

/// The content words spoken and heard, and how many of the spoken ones the
/// transcript has in order (their longest common subsequence).
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

    /// Panics, naming `what`, unless something was spoken and at least
    /// `min` (0..=1) of its content words were heard.
    pub fn assert_at_least(&self, min: f64, what: &str) {
        assert!(!self.spoken.is_empty(), "{what}: no content words in what was spoken, nothing to check\n{self}");
        assert!(!self.heard.is_empty(), "{what}: the transcript has no content words\n{self}");
        assert!(self.fraction() >= min, "{what}: fewer than {:.0}% of the spoken content words heard\n{self}", min * 100.0);
    }
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "overlap: {}/{} spoken content words heard ({:.0}%)", self.matched, self.spoken.len(), self.fraction() * 100.0)?;
        writeln!(f, "spoken:  {}", self.spoken.join(" "))?;
        write!(f, "heard:   {}", self.heard.join(" "))
    }
}
