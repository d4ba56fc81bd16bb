//! cellweave-filter (not implemented yet).
fn main() {
    eprintln!("cellweave-filter: not implemented yet");
    std::process::exit(2);
}
