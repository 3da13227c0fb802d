//! Detecting how a text indents: tabs, or spaces of some width.
//!
//! Models often indent with four spaces whatever the file does; knowing the
//! file's own style lets [`crate::postprocess::rules::match_indentation_style`]
//! convert a suggestion before it reaches the editor, and gives the other
//! rules a tab width to measure indentation with.

use super::lines::{leading_ws, lines};

/// How a text indents its lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndentStyle {
    /// Lines are indented with tab characters.
    Tabs,
    /// Lines are indented with spaces, this many per level (1 to 8).
    Spaces(usize),
    /// The text has too few indented lines to tell; nothing is converted.
    Unknown,
}

impl IndentStyle {
    /// The width, in columns, that a tab stands for when comparing
    /// indentation: the space width for space-indented text, else 4 (the
    /// common editor default).
    pub fn tab_width(self) -> usize {
        match self {
            Self::Spaces(w) => w,
            Self::Tabs | Self::Unknown => 4,
        }
    }
}

/// Tallies of indented lines; add any number of texts, then ask for the
/// style. Lets the file's style be read from the prefix's tail and the
/// suffix's head without joining them.
#[derive(Clone, Debug, Default)]
pub(crate) struct IndentStats {
    tab_lines: usize,
    space_lines: usize,
    /// How often each increase of space indentation (1..=8) between
    /// consecutive non-blank lines was seen.
    steps: [usize; 9],
}

impl IndentStats {
    /// Counts the indentation of every non-blank line of `text`. The first
    /// line counts too when `first_is_line_start`.
    pub fn add(&mut self, text: &str, first_is_line_start: bool) {
        let mut previous: Option<usize> = None;
        for (i, line) in lines(text).enumerate() {
            if (i == 0 && !first_is_line_start) || line.is_blank() {
                continue;
            }
            let ws = leading_ws(line.text);
            let content = line.text.get(ws.len()..).unwrap_or("");
            // ` * ` continuation lines of block comments sit one column off
            // the code's grid; they would read as one-space indentation.
            if content.starts_with('*') {
                continue;
            }
            if ws.starts_with('\t') {
                self.tab_lines += 1;
                previous = None;
                continue;
            }
            if ws.starts_with(' ') {
                self.space_lines += 1;
            }
            if ws.contains('\t') {
                previous = None;
                continue;
            }
            let width = ws.len();
            if let Some(before) = previous {
                if let Some(step) = width.checked_sub(before) {
                    if let Some(slot) = self.steps.get_mut(step) {
                        if step > 0 {
                            *slot += 1;
                        }
                    }
                }
            }
            previous = Some(width);
        }
    }

    /// Counts one line's leading whitespace as tab- or space-indented,
    /// without measuring steps: for a line whose column is not its own.
    pub fn add_indentation(&mut self, ws: &str) {
        if ws.starts_with('\t') {
            self.tab_lines += 1;
        } else if ws.starts_with(' ') {
            self.space_lines += 1;
        }
    }

    /// The style the counts show: the more common of tabs and spaces, and for
    /// spaces the most common step (the smaller on a tie; 4 when no step was
    /// seen, as with a file whose only indented lines are one level deep).
    pub fn style(&self) -> IndentStyle {
        if self.tab_lines == 0 && self.space_lines == 0 {
            return IndentStyle::Unknown;
        }
        if self.tab_lines > self.space_lines {
            return IndentStyle::Tabs;
        }
        let mut best = 0;
        let mut best_count = 0;
        for (step, count) in self.steps.iter().enumerate() {
            if *count > best_count {
                best = step;
                best_count = *count;
            }
        }
        IndentStyle::Spaces(if best_count == 0 { 4 } else { best })
    }
}

/// Detects how `text` indents: tabs when most indented lines start with a
/// tab, else spaces of the most common width by which indentation grows from
/// one line to the next; [`IndentStyle::Unknown`] when no line is indented.
pub fn indentation_style(text: &str) -> IndentStyle {
    let mut stats = IndentStats::default();
    stats.add(text, true);
    stats.style()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_of_real_files() {
        let python = "def f(x):\n    if x:\n        return 1\n    return 2\n";
        assert_eq!(indentation_style(python), IndentStyle::Spaces(4));
        let js = "function f(x) {\n  if (x) {\n    return 1;\n  }\n}\n";
        assert_eq!(indentation_style(js), IndentStyle::Spaces(2));
        let go = "func f(x int) int {\n\tif x > 0 {\n\t\treturn 1\n\t}\n\treturn 2\n}\n";
        assert_eq!(indentation_style(go), IndentStyle::Tabs);
        let c = "/**\n * Doc.\n */\nint f(void) {\n    return 0;\n}\n";
        assert_eq!(indentation_style(c), IndentStyle::Spaces(4));
        assert_eq!(indentation_style("fn main() {}\n"), IndentStyle::Unknown);
        assert_eq!(indentation_style(""), IndentStyle::Unknown);
    }
}
