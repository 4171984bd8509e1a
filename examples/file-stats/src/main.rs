//! `file-stats PATH...`: prints lines, words and bytes of each file, and of
//! every file under each directory, like `wc`. Paths are guest paths: the
//! manifest decides which host directories they reach. A path it cannot
//! read is reported and makes the exit code 1.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: file-stats PATH...");
        return ExitCode::from(2);
    }
    let mut failed = false;
    let mut total = [0usize; 3];
    for path in &paths {
        failed |= !visit(Path::new(path), &mut total);
    }
    println!("{:>8} {:>8} {:>8} total", total[0], total[1], total[2]);
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// Counts `path` (recursing into directories); false if anything failed.
fn visit(path: &Path, total: &mut [usize; 3]) -> bool {
    if path.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(error) => return fail(path, error),
        };
        let mut children: Vec<_> = entries.filter_map(Result::ok).map(|entry| entry.path()).collect();
        children.sort();
        return children.iter().fold(true, |ok, child| visit(child, total) && ok);
    }
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let counts = [text.lines().count(), text.split_whitespace().count(), bytes.len()];
            println!("{:>8} {:>8} {:>8} {}", counts[0], counts[1], counts[2], path.display());
            for (sum, count) in total.iter_mut().zip(counts) {
                *sum += count;
            }
            true
        }
        Err(error) => fail(path, error),
    }
}

fn fail(path: &Path, error: std::io::Error) -> bool {
    eprintln!("file-stats: {}: {error}", path.display());
    false
}
