import Foundation

/// Host keys of assets: pinned in config, else trusted on first use and kept in
/// `DATA_DIR/asset_host_keys` (one `asset host:port SHA256:...` line each). A key that no
/// longer matches refuses the connection; nobody is asked to type "yes".
public final class AssetHostKeys: @unchecked Sendable {
    public enum Verdict: Equatable, Sendable {
        case trusted
        case firstUse
        case changed(expected: String)
    }

    private let path: String
    private let lock = NSLock()
    private var known: [String: String] = [:]

    public init(path: String) {
        self.path = path
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: " ")
                if parts.count == 2 { known[String(parts[0])] = String(parts[1]) }
            }
        }
    }

    private static func key(asset: GatehouseConfig.Asset) -> String { "\(asset.name)/\(asset.host):\(asset.sshPort)" }

    /// Checks a presented fingerprint; on first use remembers it (written to disk at once).
    public func check(asset: GatehouseConfig.Asset, fingerprint: String) -> Verdict {
        check(key: Self.key(asset: asset), pin: asset.hostKey, fingerprint: fingerprint)
    }

    /// The same for any keyed identity (an asset's RDP certificate: `asset/host:port`).
    public func check(key k: String, pin: String?, fingerprint: String) -> Verdict {
        if let pin {
            return pin == fingerprint ? .trusted : .changed(expected: pin)
        }
        return lock.withLock {
            if let expected = known[k] { return expected == fingerprint ? .trusted : .changed(expected: expected) }
            known[k] = fingerprint
            let text = known.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)\n" }.joined()
            let tmp = path + ".tmp"
            if FileManager.default.createFile(atPath: tmp, contents: Data(text.utf8)) {
                _ = rename(tmp, path)
            }
            return .firstUse
        }
    }
}
