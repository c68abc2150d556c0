fn main() {
    std::process::exit(s3upfs::cli::main());
}
