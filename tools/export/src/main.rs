//! cellweave-export (not implemented yet).
fn main() {
    eprintln!("cellweave-export: not implemented yet");
    std::process::exit(2);
}
