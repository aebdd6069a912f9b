//! Command-line output: commands print their results as JSON on stdout (for scripts);
//! logs go to stderr.

use serde::Serialize;
use std::io::Write;

/// Prints `value` as pretty JSON and a newline: a command's one result.
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, value)?;
    writeln!(stdout)?;
    Ok(())
}

/// Prints `value` as one line of JSON: an item of a stream (JSON Lines).
pub fn print_json_line(value: &impl Serialize) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, value)?;
    writeln!(stdout)?;
    Ok(())
}
