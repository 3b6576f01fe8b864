import CLibSSH
import Foundation
import GatehouseCore

/// What the relay needs from a file-transfer auditor (SFTP or legacy scp): it sees the user's
/// bytes before they go on (and may hold them back and answer the user itself) and the
/// asset's bytes as the user gets them.
protocol TransferAuditing: AnyObject {
    func client(_ bytes: [UInt8]) throws -> (forward: [UInt8], reply: [UInt8])
    /// What the user gets instead of `bytes` (the auditor may slip in its own answers).
    func server(_ bytes: [UInt8]) throws -> [UInt8]
    func finish()
}

extension GatewayChannel {
    /// SFTP for the `sftp` subsystem, scp for `scp -t` / `scp -f` execs; nil otherwise.
    func makeTransferAuditor(target: Directory.Target, session: AuditSession) -> TransferAuditing? {
        let sessionID = session.id
        weak let audit = session
        let scp: ScpAuditor.Command? = if case .exec(let command) = program ?? .shell { ScpAuditor.parse(command: command) } else { nil }
        let events = TransferAuditEvents(
            transfer: { t in
                let path = scp.map { Self.scpPath(t.path, command: $0) } ?? t.path
                audit?.transfer(TransferRecord(sessionID: sessionID, time: t.started, direction: t.direction.rawValue, path: path,
                                               bytes: t.bytes, outcome: t.result, ended: t.ended, sha256: t.sha256))
                if t.result == "refused" { audit?.activity(Activity(.transferRefused, "\(t.direction.rawValue) of \(t.path) refused by the grant")) }
            },
            activity: { kind, detail in audit?.activity(Activity(.fileOperation, "\(kind) \(detail)")) })
        let allowUpload = target.actions.contains(.upload), allowDownload = target.actions.contains(.download)
        switch program ?? .shell {
        case .subsystem("sftp"):
            return SFTPAuditor(policy: .init(allowUpload: allowUpload, allowDownload: allowDownload), events: events)
        case .exec(let command):
            return ScpAuditor(command: command, policy: .init(allowUpload: allowUpload, allowDownload: allowDownload), events: events)
        default:
            return nil
        }
    }

    /// Legacy scp names files relative to the command's target; this makes them absolute.
    /// Downloads: the first name sent is the target's own, so files sit beside the target.
    /// Uploads: into the target when it must be a directory (`-d`) or ends with `/`; otherwise
    /// the first name sent becomes the target itself (`scp f host:/dir/new` writes /dir/new).
    /// `scp f host:/existing-dir` without the slash is recorded as /existing-dir: the protocol
    /// does not say the target is a directory.
    static func scpPath(_ relative: String, command: ScpAuditor.Command) -> String {
        if relative.hasPrefix("/") { return relative }
        let target = command.target
        switch command.direction {
        case .download:
            return ((target as NSString).deletingLastPathComponent as NSString).appendingPathComponent(relative)
        case .upload:
            if command.targetIsDirectory || target.hasSuffix("/") { return (target as NSString).appendingPathComponent(relative) }
            let rest = relative.split(separator: "/", maxSplits: 1)
            return rest.count == 2 ? (target as NSString).appendingPathComponent(String(rest[1])) : target
        }
    }

    /// A scp download the grant does not allow is refused before the asset is reached.
    func refusedTransfer(_ program: ChannelProgram, target: Directory.Target) -> String? {
        guard case .exec(let command) = program, let direction = ScpAuditor.direction(of: command) else { return nil }
        if direction == .download, !target.actions.contains(.download) { return "downloads are not allowed for you on \(target.asset.name)" }
        if direction == .upload, !target.actions.contains(.upload) { return "uploads are not allowed for you on \(target.asset.name)" }
        return nil
    }

    /// The auditor found the stream broken or hostile: the channel ends, everyone else goes on.
    func transferProtocolFailed(_ message: String) {
        connection.logger.warning("file transfer stream refused", metadata: ["session": "\(audit?.record.shortID ?? "-")", "error": "\(message)"])
        audit?.activity(Activity(.protocolError, message))
        abort(message: "the file transfer stream is malformed (\(message)); the channel is closed", by: "gatehouse")
    }
}

extension SFTPAuditor: TransferAuditing {
    func client(_ bytes: [UInt8]) throws -> (forward: [UInt8], reply: [UInt8]) {
        let verdict = try clientBytes(bytes)
        return (verdict.forward, verdict.replyToClient)
    }

    func server(_ bytes: [UInt8]) throws -> [UInt8] { try serverBytes(bytes) }
}

extension ScpAuditor: TransferAuditing {
    func client(_ bytes: [UInt8]) throws -> (forward: [UInt8], reply: [UInt8]) {
        let verdict = try clientBytes(bytes)
        return (verdict.forward, verdict.replyToClient)
    }

    func server(_ bytes: [UInt8]) throws -> [UInt8] { try serverBytes(bytes) }
}
