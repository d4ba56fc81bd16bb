//! cellweave-simulate (not implemented yet).
fn main() {
    eprintln!("cellweave-simulate: not implemented yet");
    std::process::exit(2);
}
