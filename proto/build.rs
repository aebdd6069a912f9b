//! Compiles the protos with protox (a protobuf compiler written in Rust), so a fresh
//! machine needs no `protoc`. The encoded descriptor set is kept for gRPC reflection.

use prost::Message;

const PROTOS: [&str; 2] = [
    "medbook/audit/v1/audit.proto",
    "medbook/schedule/v1/schedule.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("medbook_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
