//! Positions as the editor counts them, converted to byte offsets in a rope and back.
//!
//! An LSP position is a zero-based line plus a character offset counted in the
//! code units of the negotiated encoding. Lines are broken by `\n`, `\r\n` and a
//! lone `\r`, which is exactly what ropey counts with its `cr_lines` feature.
//!
//! Out-of-range input never panics; it is clamped the way the LSP specification
//! asks, and the caller is told how ([`Clamp`]) so that it can log:
//! - a line past the last line clamps to the end of the document;
//! - a character past the end of its line clamps to the end of the line, before
//!   the line break;
//! - a character inside a UTF-16 surrogate pair or a UTF-8 sequence rounds down
//!   to the start of that character.

use ropey::Rope;

/// The unit in which the editor counts `character` offsets.
///
/// Negotiated once at initialize: UTF-8 avoids all conversion work, UTF-16 is
/// the protocol's mandatory fallback, UTF-32 counts Unicode scalar values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PositionEncoding {
    /// Offsets count bytes of UTF-8.
    Utf8,
    /// Offsets count UTF-16 code units; the LSP default every client supports.
    #[default]
    Utf16,
    /// Offsets count Unicode scalar values (Rust `char`s).
    Utf32,
}

impl PositionEncoding {
    /// Picks the encoding from the client's offered list (`"utf-8"`, `"utf-16"`,
    /// `"utf-32"`): UTF-8 when offered, because it needs no conversion, else the
    /// protocol's mandatory UTF-16.
    pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Self {
        if offered
            .into_iter()
            .any(|name| name.eq_ignore_ascii_case("utf-8"))
        {
            Self::Utf8
        } else {
            Self::Utf16
        }
    }

    /// The protocol's name for the encoding, so the server can announce its choice.
    pub fn as_lsp_str(self) -> &'static str {
        match self {
            Self::Utf8 => "utf-8",
            Self::Utf16 => "utf-16",
            Self::Utf32 => "utf-32",
        }
    }

    /// How many code units of this encoding `c` takes; used to count offsets.
    pub fn units_of(self, c: char) -> usize {
        match self {
            Self::Utf8 => c.len_utf8(),
            Self::Utf16 => c.len_utf16(),
            Self::Utf32 => 1,
        }
    }
}

/// A position as the editor sends it: a zero-based line and a character offset
/// in the negotiated encoding's code units. Plain so that this layer needs no
/// LSP types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// Zero-based line number.
    pub line: u32,
    /// Zero-based offset within the line, in code units of the encoding.
    pub character: u32,
}

impl Position {
    /// Builds a position; a shorthand for tests and callers.
    pub const fn new(line: u32, character: u32) -> Self {
        Self { line, character }
    }
}

/// A half-open span of the document between two positions, as the editor sends it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Range {
    /// First position inside the range.
    pub start: Position,
    /// First position after the range.
    pub end: Position,
}

impl Range {
    /// Builds a range; a shorthand for tests and callers.
    pub const fn new(start: Position, end: Position) -> Self {
        Self { start, end }
    }
}

/// Why a conversion did not use its input as given, so the caller can log a
/// misbehaving client instead of silently accepting it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Clamp {
    /// The input was valid and used as given.
    Exact,
    /// The line was past the last line; the end of the document was used.
    LinePastEnd,
    /// The character was past the end of its line; the line's end (before the
    /// line break) was used.
    CharacterPastLineEnd,
    /// The offset fell inside a character (a surrogate pair, a UTF-8 sequence)
    /// or between the `\r` and `\n` of a line break; it was rounded down.
    InsideCharacter,
    /// A byte offset was past the end of the text; the end was used.
    OffsetPastEnd,
    /// A range ended before it started; its two ends were swapped.
    ReversedRange,
}

impl Clamp {
    /// True when the input was used as given.
    pub fn is_exact(self) -> bool {
        self == Self::Exact
    }

    /// Keeps the first reason, so a combined result reports the first problem.
    fn or(self, other: Self) -> Self {
        if self.is_exact() {
            other
        } else {
            self
        }
    }
}

/// A converted value plus how its input had to be clamped.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Clamped<T> {
    /// The converted (possibly clamped) value.
    pub value: T,
    /// What was clamped, or [`Clamp::Exact`].
    pub clamp: Clamp,
}

impl<T> Clamped<T> {
    /// Pairs a value with its clamp.
    fn new(value: T, clamp: Clamp) -> Self {
        Self { value, clamp }
    }
}

/// The char index of the end of `line`'s content, before its line break.
/// `line` must be a valid line index of `rope`.
fn line_content_end_char(rope: &Rope, line: usize) -> usize {
    let end = if line + 1 < rope.len_lines() {
        rope.line_to_char(line + 1)
    } else {
        rope.len_chars()
    };
    let start = rope.line_to_char(line);
    let mut content_end = end;
    if content_end > start && rope.char(content_end - 1) == '\n' {
        content_end -= 1;
        if content_end > start && rope.char(content_end - 1) == '\r' {
            content_end -= 1;
        }
    } else if content_end > start && rope.char(content_end - 1) == '\r' {
        content_end -= 1;
    }
    content_end
}

/// Converts an editor position to a byte offset in `rope`, clamping as the
/// module documentation describes.
pub fn position_to_byte(rope: &Rope, pos: Position, enc: PositionEncoding) -> Clamped<usize> {
    let line = pos.line as usize;
    if line >= rope.len_lines() {
        return Clamped::new(rope.len_bytes(), Clamp::LinePastEnd);
    }
    let start_char = rope.line_to_char(line);
    let end_char = line_content_end_char(rope, line);
    let character = pos.character as usize;
    let (char_idx, clamp) = match enc {
        PositionEncoding::Utf32 => {
            let target = start_char + character;
            if target > end_char {
                (end_char, Clamp::CharacterPastLineEnd)
            } else {
                (target, Clamp::Exact)
            }
        }
        PositionEncoding::Utf16 => {
            let target = rope.char_to_utf16_cu(start_char) + character;
            if target > rope.char_to_utf16_cu(end_char) {
                (end_char, Clamp::CharacterPastLineEnd)
            } else {
                // Ropey rounds an index inside a surrogate pair down to its char.
                let idx = rope.utf16_cu_to_char(target);
                let exact = rope.char_to_utf16_cu(idx) == target;
                (
                    idx,
                    if exact {
                        Clamp::Exact
                    } else {
                        Clamp::InsideCharacter
                    },
                )
            }
        }
        PositionEncoding::Utf8 => {
            let target = rope.line_to_byte(line) + character;
            if target > rope.char_to_byte(end_char) {
                (end_char, Clamp::CharacterPastLineEnd)
            } else {
                // Ropey rounds a byte inside a UTF-8 sequence down to its char.
                let idx = rope.byte_to_char(target);
                let exact = rope.char_to_byte(idx) == target;
                (
                    idx,
                    if exact {
                        Clamp::Exact
                    } else {
                        Clamp::InsideCharacter
                    },
                )
            }
        }
    };
    Clamped::new(rope.char_to_byte(char_idx), clamp)
}

/// Converts a byte offset in `rope` to an editor position. An offset past the
/// end clamps to the end; one inside a character or between the `\r` and `\n`
/// of a line break rounds down.
pub fn byte_to_position(rope: &Rope, byte: usize, enc: PositionEncoding) -> Clamped<Position> {
    let (byte, mut clamp) = if byte > rope.len_bytes() {
        (rope.len_bytes(), Clamp::OffsetPastEnd)
    } else {
        (byte, Clamp::Exact)
    };
    let mut char_idx = rope.byte_to_char(byte);
    if rope.char_to_byte(char_idx) != byte {
        clamp = clamp.or(Clamp::InsideCharacter);
    }
    let line = rope.byte_to_line(byte);
    let start_char = rope.line_to_char(line);
    let end_char = line_content_end_char(rope, line);
    if char_idx > end_char {
        // Only possible between the `\r` and `\n` of a CRLF break.
        char_idx = end_char;
        clamp = clamp.or(Clamp::InsideCharacter);
    }
    let character = match enc {
        PositionEncoding::Utf8 => rope.char_to_byte(char_idx) - rope.char_to_byte(start_char),
        PositionEncoding::Utf16 => {
            rope.char_to_utf16_cu(char_idx) - rope.char_to_utf16_cu(start_char)
        }
        PositionEncoding::Utf32 => char_idx - start_char,
    };
    let pos = Position {
        line: saturate(line),
        character: saturate(character),
    };
    Clamped::new(pos, clamp)
}

/// Converts an editor range to a byte range. A reversed range is swapped; the
/// reported clamp is the first problem met (start, then end, then order).
pub fn range_to_bytes(
    rope: &Rope,
    range: Range,
    enc: PositionEncoding,
) -> Clamped<std::ops::Range<usize>> {
    let start = position_to_byte(rope, range.start, enc);
    let end = position_to_byte(rope, range.end, enc);
    let clamp = start.clamp.or(end.clamp);
    if end.value < start.value {
        Clamped::new(end.value..start.value, clamp.or(Clamp::ReversedRange))
    } else {
        Clamped::new(start.value..end.value, clamp)
    }
}

/// Converts a byte range to an editor range, clamping both ends as
/// [`byte_to_position`] does.
pub fn bytes_to_range(
    rope: &Rope,
    bytes: std::ops::Range<usize>,
    enc: PositionEncoding,
) -> Clamped<Range> {
    let start = byte_to_position(rope, bytes.start, enc);
    let end = byte_to_position(rope, bytes.end, enc);
    let mut clamp = start.clamp.or(end.clamp);
    let (start, end) = if end.value < start.value {
        clamp = clamp.or(Clamp::ReversedRange);
        (end.value, start.value)
    } else {
        (start.value, end.value)
    };
    Clamped::new(Range { start, end }, clamp)
}

/// Narrows a count to `u32`, saturating; a line this long cannot be addressed
/// by the protocol anyway.
fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[path = "encoding_tests.rs"]
mod tests;
