//! Unit tests for position conversions: every encoding, non-BMP and
//! multi-byte text, every line-break style, and every clamping rule.

use super::*;
use ropey::Rope;
use PositionEncoding::{Utf16, Utf32, Utf8};

/// Converts `(line, character)` in `enc` on `text`, as `(byte, clamp)`.
fn to_byte(text: &str, line: u32, character: u32, enc: PositionEncoding) -> (usize, Clamp) {
    let res = position_to_byte(&Rope::from_str(text), Position::new(line, character), enc);
    (res.value, res.clamp)
}

/// Converts `byte` in `text` to `(line, character, clamp)` in `enc`.
fn to_pos(text: &str, byte: usize, enc: PositionEncoding) -> (u32, u32, Clamp) {
    let res = byte_to_position(&Rope::from_str(text), byte, enc);
    (res.value.line, res.value.character, res.clamp)
}

#[test]
fn ascii_positions_are_byte_offsets_in_every_encoding() {
    for enc in [Utf8, Utf16, Utf32] {
        assert_eq!(
            to_byte("fn main() {}\nlet x;", 0, 3, enc),
            (3, Clamp::Exact)
        );
        assert_eq!(
            to_byte("fn main() {}\nlet x;", 1, 4, enc),
            (17, Clamp::Exact)
        );
        assert_eq!(
            to_pos("fn main() {}\nlet x;", 17, enc),
            (1, 4, Clamp::Exact)
        );
    }
}

#[test]
fn emoji_outside_the_bmp_counts_two_utf16_units_and_four_bytes() {
    // `a🦀b`: the crab is U+1F980, 4 bytes, 2 UTF-16 units, 1 char.
    let text = "a🦀b\n";
    assert_eq!(to_byte(text, 0, 1, Utf16), (1, Clamp::Exact));
    assert_eq!(to_byte(text, 0, 2, Utf16), (1, Clamp::InsideCharacter));
    assert_eq!(to_byte(text, 0, 3, Utf16), (5, Clamp::Exact));
    assert_eq!(to_byte(text, 0, 4, Utf16), (6, Clamp::Exact));
    assert_eq!(to_byte(text, 0, 5, Utf16), (6, Clamp::CharacterPastLineEnd));
    assert_eq!(to_byte(text, 0, 3, Utf8), (1, Clamp::InsideCharacter));
    assert_eq!(to_byte(text, 0, 5, Utf8), (5, Clamp::Exact));
    assert_eq!(to_byte(text, 0, 2, Utf32), (5, Clamp::Exact));
    assert_eq!(to_pos(text, 5, Utf16), (0, 3, Clamp::Exact));
    assert_eq!(to_pos(text, 5, Utf8), (0, 5, Clamp::Exact));
    assert_eq!(to_pos(text, 5, Utf32), (0, 2, Clamp::Exact));
    assert_eq!(to_pos(text, 3, Utf16), (0, 1, Clamp::InsideCharacter));
}

#[test]
fn cjk_is_one_utf16_unit_and_three_bytes() {
    let text = "中文x";
    assert_eq!(to_byte(text, 0, 1, Utf16), (3, Clamp::Exact));
    assert_eq!(to_byte(text, 0, 2, Utf16), (6, Clamp::Exact));
    assert_eq!(to_byte(text, 0, 1, Utf8), (0, Clamp::InsideCharacter));
    assert_eq!(to_byte(text, 0, 5, Utf8), (3, Clamp::InsideCharacter));
    assert_eq!(to_pos(text, 6, Utf16), (0, 2, Clamp::Exact));
}

#[test]
fn combining_marks_are_characters_of_their_own() {
    // `e` + U+0301: two chars, one grapheme; the protocol counts code units.
    let text = "e\u{301}x";
    assert_eq!(to_byte(text, 0, 1, Utf16), (1, Clamp::Exact));
    assert_eq!(to_byte(text, 0, 2, Utf16), (3, Clamp::Exact));
    assert_eq!(to_byte(text, 0, 2, Utf8), (1, Clamp::InsideCharacter));
    assert_eq!(to_pos(text, 3, Utf32), (0, 2, Clamp::Exact));
}

#[test]
fn crlf_is_one_line_break_and_clamps_before_it() {
    let text = "ab\r\ncd";
    for enc in [Utf8, Utf16, Utf32] {
        assert_eq!(to_byte(text, 0, 2, enc), (2, Clamp::Exact));
        assert_eq!(to_byte(text, 0, 3, enc), (2, Clamp::CharacterPastLineEnd));
        assert_eq!(to_byte(text, 1, 0, enc), (4, Clamp::Exact));
        assert_eq!(to_byte(text, 1, 2, enc), (6, Clamp::Exact));
        assert_eq!(to_pos(text, 3, enc), (0, 2, Clamp::InsideCharacter));
        assert_eq!(to_pos(text, 4, enc), (1, 0, Clamp::Exact));
    }
}

#[test]
fn a_lone_cr_breaks_a_line() {
    let text = "ab\rcd\nef";
    for enc in [Utf8, Utf16, Utf32] {
        assert_eq!(to_byte(text, 0, 9, enc), (2, Clamp::CharacterPastLineEnd));
        assert_eq!(to_byte(text, 1, 1, enc), (4, Clamp::Exact));
        assert_eq!(to_byte(text, 2, 0, enc), (6, Clamp::Exact));
        assert_eq!(to_pos(text, 3, enc), (1, 0, Clamp::Exact));
    }
}

#[test]
fn an_empty_document_has_one_empty_line() {
    for enc in [Utf8, Utf16, Utf32] {
        assert_eq!(to_byte("", 0, 0, enc), (0, Clamp::Exact));
        assert_eq!(to_byte("", 0, 5, enc), (0, Clamp::CharacterPastLineEnd));
        assert_eq!(to_byte("", 1, 0, enc), (0, Clamp::LinePastEnd));
        assert_eq!(to_pos("", 0, enc), (0, 0, Clamp::Exact));
        assert_eq!(to_pos("", 3, enc), (0, 0, Clamp::OffsetPastEnd));
    }
}

#[test]
fn the_last_line_may_lack_a_newline() {
    assert_eq!(to_byte("a\nbc", 1, 2, Utf16), (4, Clamp::Exact));
    assert_eq!(
        to_byte("a\nbc", 1, 3, Utf16),
        (4, Clamp::CharacterPastLineEnd)
    );
    assert_eq!(to_byte("a\nbc", 2, 0, Utf16), (4, Clamp::LinePastEnd));
    // With a final newline there is one more, empty, line.
    assert_eq!(to_byte("a\n", 1, 0, Utf16), (2, Clamp::Exact));
    assert_eq!(to_byte("a\n", 7, 7, Utf16), (2, Clamp::LinePastEnd));
    assert_eq!(to_pos("a\n", 2, Utf16), (1, 0, Clamp::Exact));
}

#[test]
fn huge_numbers_clamp_instead_of_overflowing() {
    let text = "🦀\n中";
    for enc in [Utf8, Utf16, Utf32] {
        assert_eq!(
            to_byte(text, 0, u32::MAX, enc),
            (4, Clamp::CharacterPastLineEnd)
        );
        assert_eq!(
            to_byte(text, u32::MAX, u32::MAX, enc),
            (8, Clamp::LinePastEnd)
        );
        assert_eq!(to_pos(text, usize::MAX, enc).2, Clamp::OffsetPastEnd);
    }
}

#[test]
fn every_char_boundary_round_trips() {
    let texts = [
        "",
        "a🦀b\r\nc\rd\n",
        "中文\n\ne\u{301}\r\r\n🦀🦀",
        "\n\r\n\r",
        "x\u{0}y",
    ];
    for text in texts {
        let rope = Rope::from_str(text);
        for enc in [Utf8, Utf16, Utf32] {
            for (byte, _) in text.char_indices().chain([(text.len(), ' ')]) {
                let pos = byte_to_position(&rope, byte, enc);
                let back = position_to_byte(&rope, pos.value, enc);
                let inside_crlf =
                    byte > 0 && text[..byte].ends_with('\r') && text[byte..].starts_with('\n');
                if inside_crlf {
                    assert_eq!(pos.clamp, Clamp::InsideCharacter);
                    assert_eq!(back.value, byte - 1, "{text:?} {byte} {enc:?}");
                } else {
                    assert_eq!(pos.clamp, Clamp::Exact, "{text:?} {byte} {enc:?}");
                    assert_eq!(
                        back,
                        Clamped::new(byte, Clamp::Exact),
                        "{text:?} {byte} {enc:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn ranges_convert_both_ends_and_swap_reversed_ones() {
    let rope = Rope::from_str("ab\n🦀c");
    let range = Range::new(Position::new(1, 2), Position::new(0, 1));
    let res = range_to_bytes(&rope, range, Utf16);
    assert_eq!(res, Clamped::new(1..7, Clamp::ReversedRange));
    let res = range_to_bytes(
        &rope,
        Range::new(Position::new(0, 9), Position::new(1, 1)),
        Utf16,
    );
    assert_eq!(res, Clamped::new(2..3, Clamp::CharacterPastLineEnd));
    let back = bytes_to_range(&rope, 3..8, Utf16);
    let want = Range::new(Position::new(1, 0), Position::new(1, 3));
    assert_eq!(back, Clamped::new(want, Clamp::Exact));
}

#[test]
fn negotiation_prefers_utf8_and_falls_back_to_utf16() {
    assert_eq!(PositionEncoding::negotiate(["utf-16", "utf-8"]), Utf8);
    assert_eq!(PositionEncoding::negotiate(["utf-32", "utf-16"]), Utf16);
    assert_eq!(PositionEncoding::negotiate([]), Utf16);
    assert_eq!(Utf8.as_lsp_str(), "utf-8");
}
