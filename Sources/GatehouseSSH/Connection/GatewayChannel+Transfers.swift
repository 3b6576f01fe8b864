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
        // Legacy scp names files relative to the command's target: made absolute here, under
        // the target for uploads, beside it for downloads (the first name sent is the
        // target's own). An upload of a directory to a path that does not exist yet lands
        // one level higher than recorded; scp's protocol does not say which.
        var scpBase: String?
        if case .exec(let command) = program ?? .shell, let scp = ScpAuditor.parse(command: command) {
            scpBase = scp.direction == .upload || scp.targetIsDirectory ? scp.target : (scp.target as NSString).deletingLastPathComponent
        }
        let base = scpBase
        let events = TransferAuditEvents(
            transfer: { t in
                let path = base.map { t.path.hasPrefix("/") ? t.path : ($0 as NSString).appendingPathComponent(t.path) } ?? t.path
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
