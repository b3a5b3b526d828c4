//! `guest NAME...`: builds the guest components of `tests/guests` from
//! source (componentized) and prints their paths, one per line; what
//! `./ringos.sh` uses to get its demo component.

fn main() {
    let names: Vec<String> = std::env::args().skip(1).collect();
    if names.is_empty() || names.iter().any(|n| n == "-h" || n == "--help") {
        eprintln!(
            "usage: guest NAME...  (one of: {})",
            ringos_tests::guests::NAMES.join(", ")
        );
        std::process::exit(2);
    }
    for n in names {
        if !ringos_tests::guests::NAMES.contains(&n.as_str()) {
            eprintln!(
                "guest: no component {n:?} (there are: {})",
                ringos_tests::guests::NAMES.join(", ")
            );
            std::process::exit(2);
        }
        println!("{}", ringos_tests::guests::component(&n).display());
    }
}
