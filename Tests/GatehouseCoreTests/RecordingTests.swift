import Foundation
import XCTest
@testable import GatehouseCore

final class AsciicastTests: XCTestCase {
    /// Encodes `chunks` as output events and reads them back.
    func roundTrip(_ chunks: [[UInt8]]) throws -> [UInt8] {
        var encoder = AsciicastEncoder()
        var out = AsciicastEncoder.header(width: 80, height: 24, timestamp: 0, term: "xterm", title: "a@b")
        for (i, chunk) in chunks.enumerated() {
            chunk.withUnsafeBytes { encoder.output($0, at: Double(i) * 0.5, to: &out) }
        }
        encoder.finish(at: 99, to: &out)
        return try AsciicastReader(data: Data(out)).events().filter { $0.code == "o" }.flatMap(\.data)
    }

    func testRandomBytesSurviveExactly() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            let bytes = (0..<Int.random(in: 1...4000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var chunks: [[UInt8]] = []
            var i = 0
            while i < bytes.count {
                let n = Int.random(in: 1...37, using: &rng)
                chunks.append(Array(bytes[i..<min(bytes.count, i + n)]))
                i += n
            }
            XCTAssertEqual(try roundTrip(chunks), bytes)
        }
    }

    func testUTF8SplitAcrossReadsIsHeldTogether() throws {
        var encoder = AsciicastEncoder()
        var out: [UInt8] = []
        let euro: [UInt8] = [0xE2, 0x82, 0xAC] // €
        [UInt8(ascii: "a"), euro[0]].withUnsafeBytes { encoder.output($0, at: 0, to: &out) }
        Array(euro[1...]).withUnsafeBytes { encoder.output($0, at: 1, to: &out) }
        let text = String(decoding: out, as: UTF8.self)
        XCTAssertEqual(text, "[0.000000, \"o\", \"a\"]\n[1.000000, \"o\", \"€\"]\n")
    }

    func testInvalidBytesBecomeSurrogateEscapesAndControlsAreEscaped() {
        var encoder = AsciicastEncoder()
        var out: [UInt8] = []
        [0x1B, UInt8(ascii: "["), UInt8(ascii: "\""), 0xFF, 0xC0, 0xAF, 0x0D, 0x0A].withUnsafeBytes { encoder.output($0, at: 0.25, to: &out) }
        XCTAssertEqual(String(decoding: out, as: UTF8.self), "[0.250000, \"o\", \"\\u001b[\\\"\\udcff\\udcc0\\udcaf\\r\\n\"]\n")
    }

    func testPythonReadsTheSameBytes() throws {
        // The reference: Python's json + surrogateescape, as asciinema uses.
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else { throw XCTSkip("no python3") }
        let bytes: [UInt8] = [0x68, 0xC3, 0xA9, 0xFF, 0xED, 0xA0, 0x80, 0xF0, 0x9F, 0x98, 0x80, 0x00, 0x7F]
        var encoder = AsciicastEncoder()
        var out: [UInt8] = []
        bytes.withUnsafeBytes { encoder.output($0, at: 0, to: &out) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", "import json,sys; e=json.loads(sys.stdin.read()); sys.stdout.write(e[2].encode('utf-8','surrogateescape').hex())"]
        let stdin = Pipe(), stdout = Pipe()
        p.standardInput = stdin
        p.standardOutput = stdout
        try p.run()
        stdin.fileHandleForWriting.write(Data(out))
        try stdin.fileHandleForWriting.close()
        p.waitUntilExit()
        let hex = String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(hex, bytes.map { String(format: "%02x", $0) }.joined())
    }

    func testMarkersAndResizes() throws {
        let encoder = AsciicastEncoder()
        var out = AsciicastEncoder.header(width: 80, height: 24, timestamp: 1, term: nil, title: nil)
        encoder.resize(columns: 132, rows: 40, at: 1.5, to: &out)
        encoder.marker("ls -l \"x\"", at: 2, to: &out)
        let events = try AsciicastReader(data: Data(out)).events()
        XCTAssertEqual(events, [AsciicastEvent(time: 1.5, code: "r", data: Array("132x40".utf8)),
                                AsciicastEvent(time: 2, code: "m", data: Array("ls -l \"x\"".utf8))])
    }
}

final class RecorderAndStoreTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "gatehouse-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    func record(_ id: String, user: String = "alice", asset: String = "web01", started: Date = Date(), state: SessionState = .online) -> SessionRecord {
        SessionRecord(id: id, user: user, asset: asset, account: "deploy", protocolName: "ssh", remoteAddress: "10.0.0.9",
                      clientSoftware: "SSH-2.0-OpenSSH_9.2", program: "shell", started: started, state: state)
    }

    func testRecorderWritesCompressesAndReadsBack() throws {
        let queue = DispatchQueue(label: "session")
        let path = dir + "/rec/x.cast"
        let finished = expectation(description: "closed")
        let payload = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        nonisolated(unsafe) var finalPath: String?
        queue.sync {
            let recorder = try! TerminalRecorder(path: path, width: 100, height: 30, term: "xterm-256color", title: "alice@web01",
                                                 options: .init(), sessionQueue: queue, onFailure: { _ in XCTFail("failure") }, onDrain: {})
            for i in stride(from: 0, to: payload.count, by: 1000) {
                payload[i..<min(payload.count, i + 1000)].withUnsafeBytes { recorder.output($0) }
            }
            recorder.resize(columns: 120, rows: 40)
            recorder.close { result in
                finalPath = try? result.get()
                finished.fulfill()
            }
        }
        wait(for: [finished], timeout: 10)
        XCTAssertEqual(finalPath, path + ".gz")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        let reader = try AsciicastReader(data: try Gzip.readFile(path + ".gz"))
        XCTAssertEqual(reader.header.width, 100)
        XCTAssertEqual(reader.header.title, "alice@web01")
        XCTAssertEqual(reader.events().filter { $0.code == "o" }.flatMap(\.data), payload)
        XCTAssertEqual(reader.events().last?.code, "r")
    }

    func testStoreFiltersAndFindsByShortSerial() throws {
        let store = try SQLiteSessionStore(path: dir + "/g.sqlite")
        let day = Date(timeIntervalSince1970: 1_800_000_000)
        try store.insert(record("aaaa1111-0000-0000-0000-000000000001", user: "alice", started: day))
        try store.insert(record("aaaa2222-0000-0000-0000-000000000002", user: "bob", asset: "db01", started: day.addingTimeInterval(60), state: .failed))
        try store.insert(record("bbbb3333-0000-0000-0000-000000000003", user: "alice", asset: "db01", started: day.addingTimeInterval(120)))
        try store.addActivity(sessionID: "aaaa1111-0000-0000-0000-000000000001", Activity(.connected, "from 10.0.0.9", time: day))
        XCTAssertEqual(try store.sessions(matching: SessionFilter()).map(\.shortID), ["bbbb3333", "aaaa2222", "aaaa1111"])
        XCTAssertEqual(try store.sessions(matching: SessionFilter(user: "alice")).map(\.shortID), ["bbbb3333", "aaaa1111"])
        XCTAssertEqual(try store.sessions(matching: SessionFilter(asset: "db01", since: day.addingTimeInterval(90))).map(\.shortID), ["bbbb3333"])
        XCTAssertEqual(try store.sessions(matching: SessionFilter(states: [.failed])).map(\.user), ["bob"])
        XCTAssertEqual(try store.session(id: "bbbb").user, "alice")
        XCTAssertThrowsError(try store.session(id: "aaaa")) { XCTAssertTrue("\($0)".contains("several")) }
        XCTAssertThrowsError(try store.session(id: "'; drop table session; --"))
        XCTAssertEqual(try store.activities(sessionID: "aaaa1111-0000-0000-0000-000000000001").map(\.kind), ["connected"])
        // A second handle on the same file sees the same rows (admin CLI beside a running server).
        XCTAssertEqual(try SQLiteSessionStore(path: dir + "/g.sqlite").sessions(matching: SessionFilter()).count, 3)
    }

    func testRecoveryMarksOnlineSessionsInterruptedAndCutsTheTornLine() throws {
        let trail = try AuditTrail(dataDirectory: dir, policy: RecordingPolicy(), logger: .init(label: "test"))
        var r = record("cccc4444-0000-0000-0000-000000000004")
        r.recording = "2026-01-01/c.cast"
        try trail.store.insert(r)
        let path = trail.recordingPath("2026-01-01/c.cast")
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let text = "{\"version\": 2, \"width\": 80, \"height\": 24}\n[0.5, \"o\", \"hello\"]\n[2.25, \"o\", \" world\"]\n[3.0, \"o\", \"tor"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try trail.recoverInterruptedSessions(), 1)
        let after = try trail.store.session(id: "cccc4444")
        XCTAssertEqual(after.state, .interrupted)
        XCTAssertEqual(after.recording, "2026-01-01/c.cast.gz")
        XCTAssertEqual(after.ended!.timeIntervalSince(after.started), 2.25, accuracy: 0.001)
        let events = try AsciicastReader(data: try Gzip.readFile(trail.recordingPath(after.recording!))).events()
        XCTAssertEqual(events.flatMap(\.data), Array("hello world".utf8))
        XCTAssertEqual(try trail.recoverInterruptedSessions(), 0)
    }

    func testRetentionDeletesOldRecordingsAndMarksRows() throws {
        var policy = RecordingPolicy()
        policy.retentionDays = 30
        let trail = try AuditTrail(dataDirectory: dir, policy: policy, logger: .init(label: "test"))
        let now = Date()
        for (id, age) in [("dddd0001-0000-0000-0000-000000000000", 40.0), ("dddd0002-0000-0000-0000-000000000000", 10.0)] {
            var r = record(id, started: now.addingTimeInterval(-age * 86400), state: .finished)
            r.recording = "\(id).cast.gz"
            try FileManager.default.createDirectory(atPath: trail.recordingsDirectory, withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: trail.recordingPath(r.recording!), contents: Data("x".utf8))
            try trail.store.insert(r)
        }
        XCTAssertEqual(try trail.sweepRetention(now: now), 1)
        XCTAssertNil(try trail.store.session(id: "dddd0001").recording)
        XCTAssertFalse(FileManager.default.fileExists(atPath: trail.recordingPath("dddd0001-0000-0000-0000-000000000000.cast.gz")))
        XCTAssertNotNil(try trail.store.session(id: "dddd0002").recording)
        XCTAssertEqual(try trail.store.activities(sessionID: "dddd0001-0000-0000-0000-000000000000").map(\.kind), ["recording_deleted"])
    }
}
