//! Tables for the terminal: every column as wide as its widest cell, so the columns align
//! whatever the ids, kinds and verdicts in them.

/// `header` and `rows` as lines, columns two spaces apart; the columns named in `right`
/// (numbers) aligned right, the others left; no trailing spaces.
pub fn render(header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(cell.chars().count());
            if i > 0 {
                out.push_str("  ");
            }
            if right.contains(&i) {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if i < last {
                    out.push_str(&" ".repeat(pad));
                }
            }
        }
        out
    };
    let mut lines = vec![line(header.to_vec())];
    lines.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let rows = vec![
            vec!["7".to_string(), "wallet.requested".into(), "ok".into()],
            vec!["1234".to_string(), "x".into(), "FAIL (other-key)".into()],
        ];
        assert_eq!(
            render(&["index", "kind", "verdict"], &rows, &[0]),
            "index  kind              verdict\n    7  wallet.requested  ok\n 1234  x                 FAIL (other-key)"
        );
    }
}
