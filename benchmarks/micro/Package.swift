// swift-tools-version: 6.1
// Micro-benchmarks of Gatehouse's hot paths, kept out of the main package so that CI does not
// build them. Run through `benchmarks/run` (or `swift run -c release gatehouse-micro`).
import Foundation
import PackageDescription

// A path dependency's identity is its directory's name, which depends on where it was cloned.
let gatehouse = URL(fileURLWithPath: Context.packageDirectory).deletingLastPathComponent().deletingLastPathComponent()

let package = Package(
    name: "GatehouseMicro",
    dependencies: [.package(path: gatehouse.path)],
    targets: [
        .executableTarget(
            name: "gatehouse-micro",
            dependencies: [.product(name: "GatehouseCore", package: gatehouse.lastPathComponent)]
        ),
    ]
)
