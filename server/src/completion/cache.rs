//! Answers without the model: a small LRU of finished suggestions keyed on
//! the prompt, and "typed-through": when the user types the first characters
//! of the suggestion last shown (or of one that came too late to be shown),
//! the rest of it is still the answer.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

fn hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Finished suggestions by prompt, least recently used evicted first.
pub struct SuggestionLru {
    capacity: usize,
    entries: HashMap<u64, String>,
    order: VecDeque<u64>,
}

impl SuggestionLru {
    /// An empty cache holding at most `capacity` suggestions.
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), entries: HashMap::new(), order: VecDeque::new() }
    }

    /// The key of a prompt (its tokens and anything else that shapes the answer).
    pub fn key(prompt: &[u32], variant: &str) -> u64 {
        hash(&(prompt, variant))
    }

    /// The suggestion cached for `key`, refreshed as most recently used.
    pub fn get(&mut self, key: u64) -> Option<String> {
        let value = self.entries.get(&key)?.clone();
        self.order.retain(|k| *k != key);
        self.order.push_back(key);
        Some(value)
    }

    /// Stores a suggestion, evicting the least recently used beyond capacity.
    pub fn put(&mut self, key: u64, suggestion: String) {
        if self.entries.insert(key, suggestion).is_some() {
            self.order.retain(|k| *k != key);
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }
}

/// The suggestion last shown in a document, and where.
#[derive(Debug, Clone)]
pub struct Shown {
    cursor: usize,
    prefix_hash: u64,
    suffix_hash: u64,
    text: String,
}

impl Shown {
    /// Remembers `suggestion` shown at byte `cursor` of `document`.
    pub fn new(document: &str, cursor: usize, suggestion: &str) -> Self {
        Self {
            cursor,
            prefix_hash: hash(&document[..cursor]),
            suffix_hash: hash(&document[cursor..]),
            text: suggestion.to_string(),
        }
    }

    /// Whether `document` (cursor at `cursor`) is the remembered one with
    /// some text typed at its cursor (and nothing else changed).
    pub fn is_typed_on(&self, document: &str, cursor: usize) -> bool {
        cursor > self.cursor
            && cursor <= document.len()
            && document.is_char_boundary(self.cursor)
            && document.is_char_boundary(cursor)
            && hash(&document[cursor..]) == self.suffix_hash
            && hash(&document[..self.cursor]) == self.prefix_hash
    }

    /// If `document` (cursor at `cursor`) is the remembered one with the
    /// first characters of the suggestion typed at the cursor, the rest of
    /// the suggestion.
    pub fn typed_through(&self, document: &str, cursor: usize) -> Option<String> {
        if cursor <= self.cursor || cursor > document.len() || !document.is_char_boundary(self.cursor) || !document.is_char_boundary(cursor) {
            return None;
        }
        let typed = &document[self.cursor..cursor];
        let rest = self.text.strip_prefix(typed)?;
        if rest.trim().is_empty() || hash(&document[cursor..]) != self.suffix_hash || hash(&document[..self.cursor]) != self.prefix_hash {
            return None;
        }
        Some(rest.to_string())
    }
}

/// Per document, what typed-through answers from: the suggestion last
/// shown, the last answer that came after its request was superseded (the
/// user typed on meanwhile, maybe just what it suggests), and where the last
/// request was asked (to tell a request that only typed on from one that
/// edited elsewhere).
#[derive(Default)]
pub struct TypedThrough {
    documents: HashMap<String, Remembered>,
}

#[derive(Default)]
struct Remembered {
    shown: Option<Shown>,
    late: Option<Shown>,
    asked: Option<Shown>,
}

impl TypedThrough {
    /// The rest of a remembered suggestion that `document` (cursor at
    /// `cursor`) types through; a late answer used this way becomes the one
    /// shown.
    pub fn answer(&mut self, uri: &str, document: &str, cursor: usize) -> Option<String> {
        let remembered = self.documents.get_mut(uri)?;
        if let Some(rest) = remembered.shown.as_ref().and_then(|s| s.typed_through(document, cursor)) {
            return Some(rest);
        }
        let rest = remembered.late.as_ref()?.typed_through(document, cursor)?;
        remembered.shown = remembered.late.take();
        Some(rest)
    }

    /// Notes a request at `cursor`; true when it only typed on at the
    /// previous request's cursor.
    pub fn asked(&mut self, uri: &str, document: &str, cursor: usize) -> bool {
        let remembered = self.documents.entry(uri.to_string()).or_default();
        let typed_on = remembered.asked.as_ref().is_some_and(|a| a.is_typed_on(document, cursor));
        remembered.asked = Some(Shown::new(document, cursor, ""));
        typed_on
    }

    /// Remembers a suggestion shown at `cursor`.
    pub fn shown(&mut self, uri: &str, document: &str, cursor: usize, suggestion: &str) {
        self.documents.entry(uri.to_string()).or_default().shown = Some(Shown::new(document, cursor, suggestion));
    }

    /// Remembers an answer whose request was answered (empty, or with the
    /// lines written by then) before it came. When it is the whole of the
    /// suggestion shown at the same place, it replaces that one: typing
    /// through then goes on past the lines shown early.
    pub fn late(&mut self, uri: &str, document: &str, cursor: usize, suggestion: &str) {
        let remembered = self.documents.entry(uri.to_string()).or_default();
        let late = Shown::new(document, cursor, suggestion);
        let extends_shown = remembered.shown.as_ref().is_some_and(|shown| {
            shown.cursor == late.cursor
                && shown.prefix_hash == late.prefix_hash
                && shown.suffix_hash == late.suffix_hash
                && late.text.starts_with(&shown.text)
        });
        if extends_shown {
            remembered.shown = Some(late.clone());
        }
        remembered.late = Some(late);
    }

    /// Forgets a document (closed).
    pub fn forget(&mut self, uri: &str) {
        self.documents.remove(uri);
    }

    /// Forgets every suggestion (another model).
    pub fn clear(&mut self) {
        self.documents.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_the_start_of_the_suggestion_answers_with_the_rest() {
        let doc = "def f(x):\n    \n";
        let shown = Shown::new(doc, 14, "return x * 2");
        let typed = "def f(x):\n    ret\n";
        assert_eq!(shown.typed_through(typed, 17).as_deref(), Some("urn x * 2"));
        assert_eq!(shown.typed_through("def f(x):\n    rex\n", 17), None, "typed something else");
        assert_eq!(shown.typed_through("def g(x):\n    ret\n", 17), None, "the text before changed");
        assert_eq!(shown.typed_through("def f(x):\n    ret\nmore", 17), None, "the text after changed");
        assert_eq!(shown.typed_through("def f(x):\n    return x * 2\n", 26), None, "nothing left to show");
        assert!(shown.is_typed_on(typed, 17) && shown.is_typed_on("def f(x):\n    rex\n", 17));
        assert!(!shown.is_typed_on(doc, 14), "nothing typed");
        assert!(!shown.is_typed_on("def g(x):\n    ret\n", 17) && !shown.is_typed_on("def f(x):\n    ret\nmore", 17));
    }

    #[test]
    fn a_late_answer_serves_the_keystrokes_that_type_it() {
        let mut memory = TypedThrough::default();
        let uri = "file:///a.py";
        assert!(!memory.asked(uri, "x = \n", 4), "the first request did not type on");
        assert!(memory.asked(uri, "x = d\n", 5), "typed `d` at the last request's cursor");
        assert!(!memory.asked(uri, "y = d\n", 5), "an edit before the cursor is not typing on");
        // The answer for `x = ` came after `d` and `de` were typed.
        memory.late(uri, "x = \n", 4, "defaultdict(int)");
        assert_eq!(memory.answer(uri, "x = de\n", 6).as_deref(), Some("faultdict(int)"));
        // It is now the one shown: typing on through it goes on answering.
        assert_eq!(memory.answer(uri, "x = def\n", 7).as_deref(), Some("aultdict(int)"));
        assert_eq!(memory.answer(uri, "x = dx\n", 6), None, "typed something else");
        memory.forget(uri);
        assert_eq!(memory.answer(uri, "x = def\n", 7), None);
    }

    #[test]
    fn a_whole_answer_after_its_first_lines_were_shown_serves_the_typing_past_them() {
        let mut memory = TypedThrough::default();
        let uri = "file:///a.py";
        let doc = "def f(xs):\n";
        memory.shown(uri, doc, doc.len(), "    total = 0\n");
        memory.late(uri, doc, doc.len(), "    total = 0\n    for x in xs:\n        total += x");
        let typed = format!("{doc}    total = 0\n");
        assert_eq!(memory.answer(uri, &typed, typed.len()).as_deref(), Some("    for x in xs:\n        total += x"));
        // A late answer elsewhere leaves the one shown alone.
        memory.shown(uri, doc, doc.len(), "    total = 0\n");
        memory.late(uri, doc, doc.len() - 1, "\n    total = 0\n    return total");
        assert_eq!(memory.answer(uri, &format!("{doc}    tot"), doc.len() + 7).as_deref(), Some("al = 0\n"));
    }

    #[test]
    fn the_lru_evicts_the_least_recently_used() {
        let mut lru = SuggestionLru::new(2);
        let (a, b, c) = (SuggestionLru::key(&[1], ""), SuggestionLru::key(&[2], ""), SuggestionLru::key(&[3], ""));
        lru.put(a, "a".into());
        lru.put(b, "b".into());
        assert_eq!(lru.get(a).as_deref(), Some("a"));
        lru.put(c, "c".into());
        assert_eq!(lru.get(b), None);
        assert_eq!(lru.get(a).as_deref(), Some("a"));
        assert_eq!(lru.get(c).as_deref(), Some("c"));
        assert_ne!(SuggestionLru::key(&[1], "single"), a);
    }
}
