import CGatehouseRDP
import Foundation
import GatehouseCore
import Logging

/// One RDP session: its audit record, desktop recording and live view. FreeRDP's threads
/// call in (frames, pointer, closed); admins call `terminate` from anywhere.
final class RDPSession: ManagedSession, @unchecked Sendable {
    private let gateway: RDPGateway
    private let handle: OpaquePointer
    private let login: LoginName
    private let target: Directory.Target
    private let request: LogonRequest
    private let id = SessionID()
    private let started = Date()
    private let lock = NSLock()
    private var audit: AuditSession?
    private var recorder: DesktopRecorder?
    private var liveHub: DesktopLive?
    private var recordingFailed = false
    private var terminatedBy: String?
    private var width = 0
    private var height = 0
    private var logger: Logger { gateway.deps.logger }

    init(gateway: RDPGateway, handle: OpaquePointer, login: LoginName, target: Directory.Target, request: LogonRequest) {
        self.gateway = gateway
        self.handle = handle
        self.login = login
        self.target = target
        self.request = request
    }

    deinit { gh_rdp_session_release(handle) }

    static func from(_ context: UnsafeMutableRawPointer?) -> RDPSession {
        Unmanaged<RDPSession>.fromOpaque(context!).takeUnretainedValue()
    }

    // MARK: ManagedSession

    var summary: SessionSummary {
        SessionSummary(id: id, user: login.user, asset: target.asset.name, account: target.account.name,
                       remoteAddress: request.address, protocolName: "rdp", started: started)
    }

    var desktop: DesktopLive? { lock.withLock { liveHub } }

    var recorderQueue: (bytes: Int, lag: Double)? {
        lock.withLock { recorder }.map { ($0.queuedBytes, 0) }
    }

    func terminate(message: String, by actor: String) {
        lock.withLock { if terminatedBy == nil { terminatedBy = actor } }
        logger.info("rdp session terminated", metadata: ["session": "\(id.short)", "by": "\(actor)", "message": "\(message)"])
        gh_rdp_session_terminate(handle, UInt32(GH_RDP_REASON_ADMIN))
    }

    // MARK: Records

    static func baseRecord(login: LoginName, asset: String, account: String, request: LogonRequest, id: SessionID = SessionID(),
                           started: Date = Date()) -> SessionRecord {
        SessionRecord(id: id.description, user: login.user, asset: asset, account: account, protocolName: "rdp",
                      remoteAddress: request.address, clientSoftware: clientSoftware(request),
                      program: "desktop \(request.width)x\(request.height)", started: started, state: .online)
    }

    static func clientSoftware(_ request: LogonRequest) -> String {
        let name = request.clientName.isEmpty ? "RDP client" : request.clientName
        return "\(name) (build \(request.clientBuild))"
    }

    static func connectionActivities(login: LoginName, request: LogonRequest, time: Date = Date()) -> [Activity] {
        [Activity(.connected, "from \(request.address) with \(clientSoftware(request)), \(request.width)x\(request.height) at \(request.colorDepth) bpp", time: time),
         Activity(.authenticated, "\(login.user) by \(request.method)", time: time)]
    }

    /// A desktop session frees tens of MiB (framebuffers, codec buffers, the recorder's screen)
    /// on threads of its own, whose malloc arenas glibc keeps; hand the free pages back.
    static func returnFreedMemory() {
        gh_rdp_return_free_memory()
    }

    // MARK: Callbacks from the C layer

    /// The asset's TLS certificate, pinned on first use like SSH host keys.
    func verifyCertificate(fingerprint: String) -> Bool {
        let key = "\(target.asset.name)/\(target.asset.host):\(target.asset.rdpPort ?? 3389)"
        switch gateway.certificates.check(key: key, pin: target.asset.rdpCertificate, fingerprint: fingerprint.lowercased()) {
        case .trusted: return true
        case .firstUse:
            logger.info("asset certificate trusted on first use", metadata: ["asset": "\(target.asset.name)", "fingerprint": "\(fingerprint)"])
            return true
        case .changed(let expected):
            logger.error("asset certificate changed: refusing", metadata: ["asset": "\(target.asset.name)", "expected": "\(expected)", "presented": "\(fingerprint)"])
            lock.withLock { certificateRefusal = "the asset's certificate changed (expected \(expected), presented \(fingerprint.lowercased()))" }
            return false
        }
    }
    private var certificateRefusal: String?

    /// Both legs are up: the session starts for the audit trail, recorded from here on.
    func connected(width: Int, height: Int) {
        let trail = gateway.deps.audit
        var record = Self.baseRecord(login: login, asset: target.asset.name, account: target.account.name, request: request, id: id, started: started)
        record.program = "desktop \(width)x\(height)"
        let session = trail.begin(record, activities: Self.connectionActivities(login: login, request: request, time: started)
                                  + [Activity(.upstreamConnected, "\(target.label), desktop \(width)x\(height)")])
        GatehouseCounters.sessionStarted(protocol: "rdp")
        let day = ISO8601DateFormatter.string(from: started, timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withFullDate])
        let relative = "\(day)/\(id).gdr"
        do {
            let hub = DesktopLive(header: DesktopRecorder.header(width: width, height: height,
                                                                 title: "\(login.user)@\(target.asset.name)", started: started))
            let rec = try DesktopRecorder(path: trail.recordingPath(relative), width: width, height: height,
                                          title: "\(login.user)@\(target.asset.name)", started: started, live: hub,
                                          onFailure: { [weak self] message in self?.recordingFailure(message) })
            session.setRecording(relative)
            lock.withLock {
                audit = session
                recorder = rec
                liveHub = hub
                self.width = width
                self.height = height
            }
        } catch {
            lock.withLock { audit = session }
            recordingFailure("cannot start the recording: \(error)")
        }
        gateway.deps.registry.add(self)
    }

    func resized(width: Int, height: Int) {
        let (rec, session) = lock.withLock { (recorder, audit) }
        rec?.resize(width: width, height: height)
        session?.activity(Activity(.connected, "the asset resized the desktop to \(width)x\(height)"))
    }

    /// Hands changed rectangles to the recorder; false ends the session (never unrecorded).
    func frame(pixels: UnsafePointer<UInt8>, stride: Int, width: Int, height: Int, rects: UnsafeBufferPointer<gh_rdp_rect>) -> Bool {
        let (rec, failed) = lock.withLock { (recorder, recordingFailed) }
        if failed && gateway.deps.config.recording.onFailure == .terminate { return false }
        guard let rec else { return !gateway.deps.config.recording.enabled || gateway.deps.config.recording.onFailure == .continue }
        let dirty = rects.map { DesktopRecorder.Rect(x: Int($0.x), y: Int($0.y), width: Int($0.width), height: Int($0.height)) }
        rec.frame(bgra: UnsafeRawPointer(pixels), stride: stride, width: width, height: height, dirty: dirty)
        return true
    }

    /// Clipboard text crossed the gateway: an activity (size and start) and an EVENT in the recording.
    func clipboard(toAsset: Bool, text: ClipboardText) {
        let (session, rec) = lock.withLock { (audit, recorder) }
        let direction = toAsset ? "upload" : "download"
        let preview = text.preview(64)
        session?.activity(Activity(.clipboard, "\(direction == "upload" ? "user's clipboard pasted on the asset" : "asset's clipboard pasted by the user"): \(text.characters) characters: \(preview.debugDescription)"))
        rec?.event(["kind": "clipboard", "direction": direction, "bytes": "\(text.byteCount)", "characters": "\(text.characters)", "text": preview])
    }

    func pointer(x: Int, y: Int) {
        lock.withLock { recorder }?.pointer(x: x, y: y)
    }

    private func recordingFailure(_ message: String) {
        let session = lock.withLock { () -> AuditSession? in
            recordingFailed = true
            return audit
        }
        logger.error("rdp recording failed", metadata: ["session": "\(id.short)", "error": "\(message)"])
        session?.activity(Activity(.recordingGap, message))
        if gateway.deps.config.recording.onFailure == .terminate {
            gh_rdp_session_terminate(handle, UInt32(GH_RDP_REASON_DENIED))
        }
    }

    /// Both legs are closed: close the recording, then the record.
    func closed(reason: String, bytesToUser: Int, bytesFromUser: Int) {
        let (session, rec, hub, by, certificate) = lock.withLock { (audit, recorder, liveHub, terminatedBy, certificateRefusal) }
        gateway.deps.registry.remove(id)
        guard let session else {
            // Never reached the asset.
            gateway.recordFailed(login: login, asset: target.asset.name, account: target.account.name, request: request,
                                 reason: certificate ?? reason)
            logger.warning("rdp session failed", metadata: ["user": "\(login.user)", "target": "\(target.label)", "reason": "\(certificate ?? reason)"])
            return
        }
        let state: SessionState = by != nil ? .terminated : .finished
        let text = by != nil ? "terminated by an administrator" : reason
        GatehouseCounters.bytesRelayed(toAsset: bytesFromUser, toUser: bytesToUser, protocol: "rdp")
        logger.info("rdp session ended", metadata: ["session": "\(id.short)", "reason": "\(text)"])
        guard let rec else {
            session.end(state: state, terminatedBy: by, reason: text, bytesIn: bytesFromUser, bytesOut: bytesToUser)
            return
        }
        let trail = gateway.deps.audit
        trail.closing.enter()
        rec.close { result in
            if case .failure(let error) = result {
                session.activity(Activity(.recordingGap, "recording incomplete: \(error)"))
            }
            hub?.end()
            session.end(state: state, terminatedBy: by, reason: text, bytesIn: bytesFromUser, bytesOut: bytesToUser)
            trail.closing.leave()
            Self.returnFreedMemory()
        }
    }
}
