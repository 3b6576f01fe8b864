import Dispatch
import Foundation
import GatehouseCore
@testable import GatehouseWeb
import Logging
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The web side of desktop (RDP) sessions against a real `WebServer` on a loopback port: the
/// `.gdr` recording route, the segment routes' refusal, the session JSON and the live
/// WebSocket (spoken by a minimal client below, so nothing but the server is under test).
final class DesktopRoutesTests: XCTestCase {
    static let passwordHash = PasswordHasher.hash(password: "unused-in-these-tests")

    var directory: URL!
    var audit: AuditTrail!
    var registry: SessionRegistry!
    var serverTask: Task<Void, Error>?
    var port = 0
    let auditorToken = "ght_desktop_tests_auditor_0123456789abcdef"
    let userToken = "ght_desktop_tests_user_0123456789abcdef"
    let adminToken = "ght_desktop_tests_admin_0123456789abcdef"

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("gatehouse-desktop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let config = try ConfigLoader(environment: [:]).parse(yaml: """
            data_dir: var
            listen: { ssh: "127.0.0.1:2222" }
            users:
              - { name: alice, password_hash: "\(Self.passwordHash)", role: user }
              - { name: audrey, password_hash: "\(Self.passwordHash)", role: auditor }
              - { name: adam, password_hash: "\(Self.passwordHash)", role: admin }
            assets:
              - name: win01
                host: 10.0.0.5
                accounts:
                  - { name: deploy, private_key_file: keys/deploy }
            grants:
              - { users: [alice], assets: [win01], accounts: [deploy] }
            """, path: directory.appendingPathComponent("gatehouse.yaml").path)
        var logger = Logger(label: "desktop-tests")
        logger.logLevel = .critical // shutting a server down at each test's end logs a CancellationError
        audit = try AuditTrail(dataDirectory: directory.appendingPathComponent("var").path, policy: RecordingPolicy(), logger: logger)
        registry = SessionRegistry()
        for (token, user) in [(auditorToken, "audrey"), (userToken, "alice"), (adminToken, "adam")] {
            try audit.store.addCredential(secret: token, CredentialRecord(kind: .token, user: user, created: Date(), expires: nil, label: "test"))
        }
        let server = WebServer(address: HostPort(host: "127.0.0.1", port: 0), config: config, registry: registry, audit: audit,
                               metrics: .unbootstrapped(), logger: logger)
        let listening = DispatchSemaphore(value: 0)
        let bound = Locked("")
        serverTask = Task.detached {
            try await server.run(onListening: { address in
                bound.value = address
                listening.signal()
            })
        }
        XCTAssertEqual(listening.wait(timeout: .now() + 30), .success, "the server did not start")
        port = Int(bound.value.split(separator: ":").last ?? "") ?? 0
        XCTAssertGreaterThan(port, 0)
    }

    override func tearDownWithError() throws {
        serverTask?.cancel()
        serverTask = nil
        audit.waitForWrites(timeout: 5)
        try? FileManager.default.removeItem(at: directory)
    }

    // MARK: Recordings

    func testRecordingOfAFinishedDesktopSessionIsServedWhole() throws {
        let file = Self.recording(records: [Self.keyframe(t: 0, color: [255, 0, 0]), Self.event(t: 500, #"{"kind":"key"}"#), Self.end(t: 900)])
        let id = try addSession(state: .finished, recording: file)
        let (status, headers, body) = try http("GET", "/api/v1/sessions/\(id)/recording", token: auditorToken)
        XCTAssertEqual(status, 200)
        XCTAssertEqual(headers["content-type"], "application/vnd.gatehouse.desktop")
        XCTAssertEqual(headers["content-disposition"], "attachment; filename=\"\(id).gdr\"")
        XCTAssertEqual(headers["cache-control"], "no-store")
        XCTAssertEqual(body, file)
        // The owner may download it too; nobody else sees it.
        XCTAssertEqual(try http("GET", "/api/v1/sessions/\(id)/recording", token: userToken).status, 200)
    }

    func testRecordingOfAnOnlineDesktopSessionStopsAtItsLastWholeRecord() throws {
        let whole = Self.recording(records: [Self.keyframe(t: 0, color: [0, 255, 0]), Self.pointer(t: 40, x: 3, y: 4)])
        // A record the gateway is still writing: its header and part of its payload.
        let torn = Self.tile(t: 80, x: 0, y: 0, w: 2, h: 2, color: [0, 0, 255]).prefix(12)
        let id = try addSession(state: .online, recording: whole + torn)
        let (status, _, body) = try http("GET", "/api/v1/sessions/\(id)/recording", token: auditorToken)
        XCTAssertEqual(status, 200)
        XCTAssertEqual(body, whole)
    }

    func testDesktopRecordingsAreNotSegmented() throws {
        let id = try addSession(state: .finished, recording: Self.recording(records: [Self.keyframe(t: 0, color: [1, 2, 3])]))
        for path in ["/recording/segments", "/recording/segments/0", "/recording/segments?idle=2"] {
            let (status, headers, body) = try http("GET", "/api/v1/sessions/\(id)\(path)", token: auditorToken)
            XCTAssertEqual(status, 409, path)
            XCTAssertTrue(headers["content-type"]?.hasPrefix("application/json") == true, path)
            let error = try XCTUnwrap(try JSONSerialization.jsonObject(with: body) as? [String: Any])["error"] as? String
            XCTAssertTrue(error?.contains("desktop recordings are not segmented") == true, "\(path): \(error ?? "no error")")
        }
    }

    func testSessionJSONSaysWhetherASessionIsADesktop() throws {
        let desktopID = try addSession(state: .finished, recording: Self.recording(records: []))
        let terminalID = try addSession(state: .finished, recording: nil, protocolName: "ssh")
        XCTAssertEqual(try sessionJSON(desktopID)["desktop"] as? Bool, true)
        XCTAssertEqual(try sessionJSON(terminalID)["desktop"] as? Bool, false)
        XCTAssertNil(try sessionJSON(desktopID)["watchers"], "a finished session has no watchers")
    }

    // MARK: Live

    func testLiveDesktopStreamSendsTheHeaderTheScreenThenNewRecordsUntilTheEnd() throws {
        let header = Self.header(width: 4, height: 3)
        let live = DesktopLive(header: header)
        let id = try addSession(state: .online, recording: header + Data([0x0A]), live: live)
        let keyframe = Self.keyframe(t: 0, color: [10, 20, 30], width: 4, height: 3)
        let pointer = Self.pointer(t: 100, x: 1, y: 2)
        live.publish(Self.tile(t: 0, x: 0, y: 0, w: 1, h: 1, color: [9, 9, 9]), keyframe: false) // before any keyframe
        live.publish(keyframe, keyframe: true)
        live.publish(pointer, keyframe: false)

        let socket = try WebSocketClient(port: port, path: "/api/v1/sessions/\(id)/live", token: auditorToken)
        defer { socket.close() }
        guard case .text(let text) = try socket.read() else { return XCTFail("the first message is not text") }
        XCTAssertEqual(text, String(decoding: header, as: UTF8.self))
        // The backlog: the last keyframe and everything since, as whole records.
        XCTAssertEqual(try socket.readBinary(count: keyframe.count + pointer.count), keyframe + pointer)

        // The watcher shows in the session, and the hub counts it.
        let json = try sessionJSON(id)
        XCTAssertEqual(json["watchers"] as? [String], ["audrey"])
        XCTAssertEqual(json["desktop"] as? Bool, true)
        XCTAssertEqual(live.watcherCount, 1)

        let tile = Self.tile(t: 200, x: 1, y: 1, w: 2, h: 2, color: [200, 100, 50])
        let event = Self.event(t: 250, #"{"kind":"clipboard","direction":"upload","text":"<b>hi</b>","bytes":9}"#)
        live.publish(tile, keyframe: false)
        live.publish(event, keyframe: false)
        XCTAssertEqual(try socket.readBinary(count: tile.count + event.count), tile + event)

        live.end()
        let end = try socket.readBinary(count: DesktopRecords.headerSize)
        XCTAssertEqual(end.first, DesktopRecords.endType)
        guard case .close(let code, _) = try socket.read() else { return XCTFail("no close after END") }
        XCTAssertEqual(code, 1000)

        // Watching was recorded; the watcher is gone from the session.
        try waitUntil("the watcher is gone") { (try self.sessionJSON(id)["watchers"] as? [String]) == [] }
        audit.waitForWrites(timeout: 5)
        let collaborations = try audit.store.collaborations(sessionID: id)
        XCTAssertEqual(collaborations.map(\.user), ["audrey"])
        XCTAssertEqual(collaborations.first?.mode, "watch")
        XCTAssertNotNil(collaborations.first?.left)
    }

    func testAWatcherThatStopsReadingIsCutLooseAndTheSessionNeverWaits() throws {
        let live = DesktopLive(header: Self.header(width: 4, height: 3))
        live.publish(Self.keyframe(t: 0, color: [1, 1, 1]), keyframe: true)
        let id = try addSession(state: .online, recording: nil, live: live)
        let socket = try WebSocketClient(port: port, path: "/api/v1/sessions/\(id)/live", token: auditorToken)
        defer { socket.close() }
        guard case .text = try socket.read() else { return XCTFail("no header") }
        try waitUntil("the watcher is attached") { live.watcherCount == 1 }
        // The client reads nothing more; the session publishes far more than a watcher may owe.
        let junk = Self.record(2, t: 10, Self.u16(0, 0, 1, 1) + Data(count: 1 << 20))
        let started = Date()
        for _ in 0..<(DesktopLiveSocket.queueLimit >> 20) + 16 { live.publish(junk, keyframe: false) }
        XCTAssertLessThan(Date().timeIntervalSince(started), 5, "publishing waited for the watcher")
        try waitUntil("the stalled watcher is cut loose") { live.watcherCount == 0 }
        try waitUntil("the watcher is gone from the session") { (try self.sessionJSON(id)["watchers"] as? [String]) == [] }
    }

    func testOnlyAuditorsAndAdminsWatchDesktops() throws {
        let live = DesktopLive(header: Self.header(width: 2, height: 2))
        live.publish(Self.keyframe(t: 0, color: [1, 1, 1], width: 2, height: 2), keyframe: true)
        let id = try addSession(state: .online, recording: nil, live: live)
        // The upgrade is refused (the framework answers a refused upgrade with 400); a plain
        // GET after the same checks says why.
        XCTAssertThrowsError(try WebSocketClient(port: port, path: "/api/v1/sessions/\(id)/live", token: userToken)) { error in
            XCTAssertTrue("\(error)".contains("upgrade refused"), "\(error)")
        }
        XCTAssertEqual(try http("GET", "/api/v1/sessions/\(id)/live", token: userToken).status, 403)
        let admin = try WebSocketClient(port: port, path: "/api/v1/sessions/\(id)/live", token: adminToken)
        defer { admin.close() }
        guard case .text = try admin.read() else { return XCTFail("no header") }
        // Without an upgrade the endpoint says what it is.
        let (status, _, body) = try http("GET", "/api/v1/sessions/\(id)/live", token: auditorToken)
        XCTAssertEqual(status, 400)
        XCTAssertTrue(String(decoding: body, as: UTF8.self).contains("WebSocket"))
    }

    func testAFinishedDesktopSessionCannotBeWatched() throws {
        let id = try addSession(state: .finished, recording: Self.recording(records: []))
        XCTAssertThrowsError(try WebSocketClient(port: port, path: "/api/v1/sessions/\(id)/live", token: auditorToken)) { error in
            XCTAssertTrue("\(error)".contains("upgrade refused"), "\(error)")
        }
        let (status, _, body) = try http("GET", "/api/v1/sessions/\(id)/live", token: auditorToken)
        XCTAssertEqual(status, 409)
        XCTAssertTrue(String(decoding: body, as: UTF8.self).contains("not online"))
    }

    // MARK: Pieces

    func testOutboxCutsAWatcherLooseWhenTooMuchWaits() {
        let outbox = DesktopLiveSocket.Outbox(limit: 10)
        XCTAssertTrue(outbox.push(Data(count: 4)))
        XCTAssertTrue(outbox.push(Data(count: 6)))
        XCTAssertEqual(outbox.take(messageLimit: 100).map(\.count), [10], "batches join into one message")
        XCTAssertTrue(outbox.push(Data(count: 8)))
        XCTAssertFalse(outbox.push(Data(count: 3)), "past the limit the watcher is cut loose")
        XCTAssertTrue(outbox.overflowed)
        XCTAssertTrue(outbox.isClosed)
        XCTAssertFalse(outbox.push(Data(count: 1)))
        XCTAssertEqual(outbox.take(messageLimit: 100), [])

        let small = DesktopLiveSocket.Outbox(limit: 100)
        for n in [5, 5, 5] { XCTAssertTrue(small.push(Data(count: n))) }
        XCTAssertEqual(small.take(messageLimit: 10).map(\.count), [10, 5], "a message holds whole batches up to the limit")
        small.close()
        XCTAssertFalse(small.push(Data(count: 1)), "a closed outbox refuses: the hub detaches the watcher")
    }

    func testWholeRecordsHoldsBackTheUnfinishedTailWhateverTheChunking() {
        let whole = Self.recording(records: [Self.keyframe(t: 0, color: [1, 2, 3], width: 8, height: 8), Self.pointer(t: 5, x: 1, y: 1),
                                             Self.event(t: 9, #"{"kind":"key"}"#)])
        let file = whole + Self.tile(t: 20, x: 0, y: 0, w: 2, h: 2, color: [4, 5, 6]).prefix(15)
        for size in [1, 2, 7, 9, 64, file.count] {
            var cutter = DesktopRecords.WholeRecords()
            var out: [UInt8] = []
            var offset = 0
            while offset < file.count {
                out += cutter.feed(Array(file[offset..<min(file.count, offset + size)]))
                offset += size
            }
            XCTAssertEqual(Data(out), whole, "chunks of \(size)")
        }
        XCTAssertTrue(DesktopRecords.containsEnd(Self.pointer(t: 1, x: 0, y: 0) + Self.end(t: 2)))
        XCTAssertFalse(DesktopRecords.containsEnd(Self.pointer(t: 1, x: 0, y: 0) + Self.event(t: 2, "{}")))
    }

    // MARK: Helpers

    @discardableResult
    func addSession(state: SessionState, recording: Data?, protocolName: String = "rdp", live: DesktopLive? = nil) throws -> String {
        let sessionID = SessionID()
        let id = sessionID.description
        var relative: String?
        if let recording {
            relative = "2026-01-01/\(id).gdr"
            let path = audit.recordingPath(relative!)
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try recording.write(to: URL(fileURLWithPath: path))
        }
        let started = Date().addingTimeInterval(-60)
        try audit.store.insert(SessionRecord(id: id, user: "alice", asset: "win01", account: "deploy", protocolName: protocolName,
                                             remoteAddress: "10.0.0.9", clientSoftware: "test", program: "desktop", started: started,
                                             ended: state == .online ? nil : Date(), state: state, recording: relative))
        if state == .online {
            registry.add(FakeSession(summary: SessionSummary(id: sessionID, user: "alice", asset: "win01", account: "deploy",
                                                             remoteAddress: "10.0.0.9", protocolName: protocolName, started: started),
                                     desktop: live))
        }
        return id
    }

    func sessionJSON(_ id: String) throws -> [String: Any] {
        let (status, _, body) = try http("GET", "/api/v1/sessions/\(id)", token: auditorToken)
        XCTAssertEqual(status, 200)
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: body) as? [String: Any])
    }

    func waitUntil(_ what: String, timeout: TimeInterval = 10, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("timed out waiting until \(what)")
    }

    /// One HTTP/1.1 request (Connection: close): status, lowercased headers and the body
    /// (chunked bodies decoded).
    func http(_ method: String, _ path: String, token: String) throws -> (status: Int, headers: [String: String], body: Data) {
        let socket = try TestSocket(port: port)
        defer { socket.close() }
        try socket.send("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nAuthorization: Bearer \(token)\r\nConnection: close\r\n\r\n")
        let (status, headers) = try socket.readHead()
        var body = Data()
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            while true {
                let sizeLine = try socket.readLine()
                let size = Int(sizeLine.split(separator: ";")[0].trimmingCharacters(in: .whitespaces), radix: 16) ?? 0
                if size == 0 { break }
                body += try socket.read(count: size)
                _ = try socket.readLine()
            }
        } else if let length = headers["content-length"].flatMap(Int.init) {
            body = try socket.read(count: length)
        } else {
            body = socket.readToEnd()
        }
        return (status, headers, body)
    }

    // MARK: The format, by hand (docs/desktop-recording.md)

    static func header(width: Int, height: Int) -> Data {
        Data(#"{"version":2,"kind":"gatehouse-desktop","width":\#(width),"height":\#(height),"timestamp":1764000000,"title":"alice@win01"}"#.utf8)
    }

    static func recording(records: [Data], width: Int = 4, height: Int = 3) -> Data {
        var data = header(width: width, height: height)
        data.append(0x0A)
        for r in records { data += r }
        return data
    }

    static func record(_ type: UInt8, t: UInt32, _ payload: Data) -> Data {
        var data = Data([type])
        for value in [UInt32(payload.count), t] { withUnsafeBytes(of: value.littleEndian) { data.append(contentsOf: $0) } }
        return data + payload
    }

    static func u16(_ values: Int...) -> Data {
        var data = Data()
        for v in values { withUnsafeBytes(of: UInt16(v).littleEndian) { data.append(contentsOf: $0) } }
        return data
    }

    /// zlib (RFC 1950) with stored deflate blocks: enough for the server, which never inflates.
    static func zlibStored(_ bytes: [UInt8]) -> Data {
        var out = Data([0x78, 0x01])
        var offset = 0
        repeat {
            let n = min(65535, bytes.count - offset)
            out.append(offset + n == bytes.count ? 1 : 0)
            out += u16(n) + u16(n ^ 0xFFFF)
            out += bytes[offset..<(offset + n)]
            offset += n
        } while offset < bytes.count
        var a: UInt32 = 1, b: UInt32 = 0
        for byte in bytes { a = (a + UInt32(byte)) % 65521; b = (b + a) % 65521 }
        withUnsafeBytes(of: ((b << 16) | a).bigEndian) { out.append(contentsOf: $0) }
        return out
    }

    static func pixels(_ color: [UInt8], count: Int) -> [UInt8] {
        Array((0..<count).map { _ in color + [255] }.joined())
    }

    static func tile(t: UInt32, x: Int, y: Int, w: Int, h: Int, color: [UInt8]) -> Data {
        record(2, t: t, u16(x, y, w, h) + zlibStored(pixels(color, count: w * h)))
    }

    static func keyframe(t: UInt32, color: [UInt8], width: Int = 4, height: Int = 3) -> Data {
        record(3, t: t, u16(0, 0, width, height) + zlibStored(pixels(color, count: width * height)))
    }

    static func pointer(t: UInt32, x: Int, y: Int) -> Data { record(4, t: t, u16(x, y)) }
    static func event(t: UInt32, _ json: String) -> Data { record(5, t: t, Data(json.utf8)) }
    static func end(t: UInt32) -> Data { record(6, t: t, Data()) }
}

/// An online desktop session as the registry sees it.
final class FakeSession: ManagedSession, @unchecked Sendable {
    let summary: SessionSummary
    let desktopLive: DesktopLive?
    init(summary: SessionSummary, desktop: DesktopLive?) {
        self.summary = summary
        desktopLive = desktop
    }
    var desktop: DesktopLive? { desktopLive }
    func terminate(message: String, by actor: String) {}
}

final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

// MARK: A blocking loopback client

struct TestSocketError: Error, CustomStringConvertible {
    var description: String
}

final class TestSocket {
    private let fd: Int32
    private var buffer = Data()

    init(port: Int, timeout: Int = 15) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSocketError(description: "socket() failed") }
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            Glibc.close(fd)
            throw TestSocketError(description: "cannot connect to 127.0.0.1:\(port)")
        }
    }

    func close() { Glibc.close(fd) }

    func send(_ text: String) throws { try send(Data(text.utf8)) }

    func send(_ data: Data) throws {
        try data.withUnsafeBytes { raw in
            var sent = 0
            while sent < raw.count {
                let n = Glibc.send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                guard n > 0 else { throw TestSocketError(description: "send failed") }
                sent += n
            }
        }
    }

    /// Reads more into the buffer; false at the end of the stream.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &chunk, chunk.count, 0)
        if n < 0 { throw TestSocketError(description: "read timed out or failed (errno \(errno))") }
        if n == 0 { return false }
        buffer.append(contentsOf: chunk[0..<n])
        return true
    }

    func read(count: Int) throws -> Data {
        while buffer.count < count {
            guard try fill() else { throw TestSocketError(description: "the connection closed after \(buffer.count) of \(count) bytes") }
        }
        let out = buffer.prefix(count)
        buffer = Data(buffer.dropFirst(count))
        return Data(out)
    }

    func readLine() throws -> String {
        while true {
            if let range = buffer.range(of: Data("\r\n".utf8)) {
                let line = String(decoding: buffer[buffer.startIndex..<range.lowerBound], as: UTF8.self)
                buffer = Data(buffer[range.upperBound...])
                return line
            }
            guard try fill() else { throw TestSocketError(description: "the connection closed mid-line") }
        }
    }

    func readHead() throws -> (Int, [String: String]) {
        let statusLine = try readLine()
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { throw TestSocketError(description: "bad status line \(statusLine)") }
        var headers: [String: String] = [:]
        while true {
            let line = try readLine()
            if line.isEmpty { break }
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return (status, headers)
    }

    func readToEnd() -> Data {
        while (try? fill()) == true {}
        defer { buffer = Data() }
        return buffer
    }
}

/// Just enough of a WebSocket client (RFC 6455) to read what the server sends.
final class WebSocketClient {
    enum Message: Equatable {
        case text(String)
        case binary(Data)
        case close(UInt16, String)
    }

    let socket: TestSocket

    init(port: Int, path: String, token: String) throws {
        socket = try TestSocket(port: port)
        try socket.send("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                        + "Authorization: Bearer \(token)\r\n\r\n")
        let (status, headers) = try socket.readHead()
        guard status == 101 else {
            let body = headers["content-length"].flatMap(Int.init).map { (try? socket.read(count: $0)) ?? Data() } ?? Data()
            socket.close()
            throw TestSocketError(description: "upgrade refused: \(status) \(String(decoding: body, as: UTF8.self))")
        }
    }

    func close() { socket.close() }

    /// The next whole message (fragments joined).
    func read() throws -> Message {
        var payload = Data()
        var opcode: UInt8?
        while true {
            let head = try socket.read(count: 2)
            let fin = head[0] & 0x80 != 0
            let frameOpcode = head[0] & 0x0F
            var length = Int(head[1] & 0x7F)
            if length == 126 {
                let ext = try socket.read(count: 2)
                length = Int(ext[0]) << 8 | Int(ext[1])
            } else if length == 127 {
                length = try socket.read(count: 8).reduce(0) { $0 << 8 | Int($1) }
            }
            let data = try socket.read(count: length)
            if frameOpcode >= 8 {
                if frameOpcode == 8 {
                    let code = data.count >= 2 ? UInt16(data[data.startIndex]) << 8 | UInt16(data[data.startIndex + 1]) : 1005
                    return .close(code, String(decoding: data.dropFirst(2), as: UTF8.self))
                }
                continue // ping, pong
            }
            if frameOpcode != 0 { opcode = frameOpcode }
            payload += data
            if fin { break }
        }
        return opcode == 1 ? .text(String(decoding: payload, as: UTF8.self)) : .binary(payload)
    }

    /// Binary messages until `count` bytes have come (records may be split over messages).
    func readBinary(count: Int) throws -> Data {
        var data = Data()
        while data.count < count {
            switch try read() {
            case .binary(let bytes): data += bytes
            case let other: throw TestSocketError(description: "expected binary records, got \(other)")
            }
        }
        return data
    }
}
