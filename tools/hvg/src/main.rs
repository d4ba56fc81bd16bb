//! cellweave-hvg (not implemented yet).
fn main() {
    eprintln!("cellweave-hvg: not implemented yet");
    std::process::exit(2);
}
