//! Listings in the terminal: a header and rows, each column as wide as its widest cell.

/// Prints `header` and `rows` in aligned columns on stdout.
pub fn print<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let header = header.map(str::to_owned);
    let widths: Vec<usize> = (0..N)
        .map(|i| {
            std::iter::once(&header)
                .chain(rows)
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}
