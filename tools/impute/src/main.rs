//! cellweave-impute (not implemented yet).
fn main() {
    eprintln!("cellweave-impute: not implemented yet");
    std::process::exit(2);
}
