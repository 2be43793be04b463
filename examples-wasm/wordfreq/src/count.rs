//! Word splitting and counting over a UTF-8 byte stream: pure logic, tested natively.

use niyanta_guest::JobError;
use serde::Serialize;
use std::collections::HashMap;
use std::io::BufRead;

/// One entry of the output array.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct WordCount {
    /// The word, lowercased.
    pub word: String,
    /// How many times it occurs.
    pub count: u64,
}

/// Counts words in text fed piece by piece (a word may span two pieces).
///
/// A word is a maximal run of Unicode alphanumeric characters (`char::is_alphanumeric`),
/// lowercased (`char::to_lowercase`). One apostrophe (`'` or `’`, stored as `'`) *between* two
/// alphanumeric characters is kept inside the word: `don't` and `O’Brien` are single words
/// (`don't`, `o'brien`); leading, trailing or doubled apostrophes separate words.
#[derive(Default)]
pub struct WordCounter {
    counts: HashMap<String, u64>,
    word: String,
    apostrophe: bool,
}

impl WordCounter {
    /// Feeds the next piece of text.
    pub fn feed(&mut self, text: &str) {
        for c in text.chars() {
            if c.is_alphanumeric() {
                if self.apostrophe {
                    self.word.push('\'');
                    self.apostrophe = false;
                }
                self.word.extend(c.to_lowercase());
            } else if (c == '\'' || c == '\u{2019}') && !self.word.is_empty() && !self.apostrophe {
                self.apostrophe = true;
            } else {
                self.end_word();
            }
        }
    }

    fn end_word(&mut self) {
        self.apostrophe = false;
        if self.word.is_empty() {
            return;
        }
        if let Some(n) = self.counts.get_mut(self.word.as_str()) {
            *n += 1;
        } else {
            self.counts.insert(self.word.clone(), 1);
        }
        self.word.clear();
    }

    /// Ends the text and returns the `n` most frequent words, by count descending then word
    /// ascending (Unicode code point order).
    pub fn top(mut self, n: usize) -> Vec<WordCount> {
        self.end_word();
        let mut all: Vec<WordCount> = self.counts.into_iter().map(|(word, count)| WordCount { word, count }).collect();
        all.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.word.cmp(&b.word)));
        all.truncate(n);
        all
    }
}

/// Length in bytes of the UTF-8 sequence that starts with `lead` (1 for an invalid lead byte,
/// which `from_utf8` then rejects).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

fn invalid(offset: u64) -> JobError {
    JobError::invalid_input(format!("input is not valid UTF-8 (bad byte sequence at byte offset {offset})"))
}

/// Reads `reader` to its end, feeding the text to a [`WordCounter`]. Calls `tick(bytes_read)`
/// after each chunk so the caller can report progress or stop (by returning an error).
///
/// # Errors
/// [`JobError::InvalidInput`] naming the byte offset of the first invalid UTF-8 sequence; any
/// error of the reader or of `tick`.
pub fn count_words<R: BufRead>(
    mut reader: R,
    mut tick: impl FnMut(u64) -> Result<(), JobError>,
) -> Result<WordCounter, JobError> {
    let mut counter = WordCounter::default();
    let mut offset = 0u64; // bytes consumed so far
    let mut carry: Vec<u8> = Vec::with_capacity(4); // a character split between two chunks
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            if !carry.is_empty() {
                return Err(invalid(offset - carry.len() as u64));
            }
            return Ok(counter);
        }
        let used = if !carry.is_empty() {
            let take = (sequence_len(carry[0]) - carry.len()).min(buf.len());
            carry.extend_from_slice(&buf[..take]);
            if carry.len() == sequence_len(carry[0]) {
                let at = offset + take as u64 - carry.len() as u64;
                counter.feed(std::str::from_utf8(&carry).map_err(|_| invalid(at))?);
                carry.clear();
            }
            take
        } else {
            match std::str::from_utf8(buf) {
                Ok(text) => {
                    counter.feed(text);
                    buf.len()
                }
                Err(e) if e.error_len().is_some() => {
                    return Err(invalid(offset + e.valid_up_to() as u64));
                }
                Err(e) => {
                    // Valid up to an incomplete character at the end of the chunk.
                    let valid = e.valid_up_to();
                    counter.feed(std::str::from_utf8(&buf[..valid]).expect("checked valid"));
                    carry.extend_from_slice(&buf[valid..]);
                    buf.len()
                }
            }
        };
        reader.consume(used);
        offset += used as u64;
        tick(offset)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn top(text: &[u8], n: usize, chunk: usize) -> Result<Vec<(String, u64)>, JobError> {
        let counter = count_words(BufReader::with_capacity(chunk, text), |_| Ok(()))?;
        Ok(counter.top(n).into_iter().map(|w| (w.word, w.count)).collect())
    }

    fn pairs(v: &[(&str, u64)]) -> Vec<(String, u64)> {
        v.iter().map(|(w, c)| (w.to_string(), *c)).collect()
    }

    #[test]
    fn counts_sorts_and_truncates() {
        let text = "The cat; the DOG. the cat? A dog, a bird!".as_bytes();
        let want = pairs(&[("the", 3), ("a", 2), ("cat", 2), ("dog", 2)]);
        for chunk in [1, 2, 3, 5, 64] {
            assert_eq!(top(text, 4, chunk).unwrap(), want, "chunk={chunk}");
        }
        assert_eq!(top(text, 0, 8).unwrap(), vec![]);
    }

    #[test]
    fn unicode_and_apostrophes() {
        let text = "Straße STRASSE straße; don't ’tis O’Brien rock''n 42 ÉTÉ été".as_bytes();
        let got = top(text, 20, 1).unwrap();
        let want = pairs(&[
            ("straße", 2),
            ("été", 2),
            ("42", 1),
            ("don't", 1),
            ("n", 1),
            ("o'brien", 1),
            ("rock", 1),
            ("strasse", 1),
            ("tis", 1),
        ]);
        assert_eq!(got, want);
        for chunk in [2, 3, 7] {
            assert_eq!(top(text, 20, chunk).unwrap(), want, "chunk={chunk}");
        }
    }

    #[test]
    fn invalid_utf8_names_the_offset() {
        for chunk in [1, 2, 64] {
            let err = top(b"ok \xff no", 5, chunk).unwrap_err();
            assert!(matches!(&err, JobError::InvalidInput(m) if m.contains("offset 3")), "{err:?}");
            let err = top(b"ok \xc3", 5, chunk).unwrap_err();
            assert!(matches!(&err, JobError::InvalidInput(m) if m.contains("offset 3")), "{err:?}");
            let err = top(b"ok \xe2\x82x", 5, chunk).unwrap_err();
            assert!(matches!(&err, JobError::InvalidInput(m) if m.contains("offset 3")), "{err:?}");
        }
    }
}
