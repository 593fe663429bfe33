//! Compiles the gRPC protos with protox (a protobuf compiler in Rust), so no `protoc` install is
//! needed, and generates the tonic service and client code from the descriptors.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTOS: [&str; 3] = [
        "cairn/inventory/v1/inventory.proto",
        "cairn/matching/v1/matching.proto",
        "cairn/publishing/v1/publishing.proto",
    ];
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        // The generated client is generic over its channel: no tonic transport needed for it.
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
