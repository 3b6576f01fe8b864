import Crypto
import Foundation
import XCTest
@testable import GatehouseCore

/// Builds SFTP v3 packets for the tests.
enum SFTPWire {
    static func u32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
    static func u64(_ v: UInt64) -> [UInt8] { u32(UInt32(v >> 32)) + u32(UInt32(v & 0xFFFF_FFFF)) }
    static func str(_ s: String) -> [UInt8] { bytes(Array(s.utf8)) }
    static func bytes(_ b: [UInt8]) -> [UInt8] { u32(UInt32(b.count)) + b }
    static func packet(_ type: UInt8, _ body: [UInt8]) -> [UInt8] { u32(UInt32(body.count + 1)) + [type] + body }

    static func initPacket(_ version: UInt32 = 3) -> [UInt8] { packet(1, u32(version)) }
    static func version(_ version: UInt32 = 3) -> [UInt8] {
        packet(2, u32(version) + str("posix-rename@openssh.com") + str("1") + str("hardlink@openssh.com") + str("1"))
    }
    static func open(_ id: UInt32, _ path: String, _ pflags: UInt32) -> [UInt8] { packet(3, u32(id) + str(path) + u32(pflags) + u32(0)) }
    static func close(_ id: UInt32, _ handle: [UInt8]) -> [UInt8] { packet(4, u32(id) + bytes(handle)) }
    static func read(_ id: UInt32, _ handle: [UInt8], _ offset: UInt64, _ length: UInt32) -> [UInt8] {
        packet(5, u32(id) + bytes(handle) + u64(offset) + u32(length))
    }
    static func write(_ id: UInt32, _ handle: [UInt8], _ offset: UInt64, _ data: [UInt8]) -> [UInt8] {
        packet(6, u32(id) + bytes(handle) + u64(offset) + bytes(data))
    }
    static func status(_ id: UInt32, _ code: UInt32, _ message: String = "") -> [UInt8] {
        packet(101, u32(id) + u32(code) + str(message) + str("en"))
    }
    static func handle(_ id: UInt32, _ handle: [UInt8]) -> [UInt8] { packet(102, u32(id) + bytes(handle)) }
    static func data(_ id: UInt32, _ data: [UInt8]) -> [UInt8] { packet(103, u32(id) + bytes(data)) }
    static func extended(_ id: UInt32, _ name: String, _ rest: [UInt8]) -> [UInt8] { packet(200, u32(id) + str(name) + rest) }

    static let READ: UInt32 = 1, WRITE: UInt32 = 2, APPEND: UInt32 = 4, CREAT: UInt32 = 8, TRUNC: UInt32 = 0x10
    static let upload = WRITE | CREAT | TRUNC
}

/// Who said what, in order: the unit a test script is made of.
enum Leg { case client([UInt8]), server([UInt8]) }

/// An auditor with its events collected and both directions' output accumulated.
final class SFTPHarness {
    var transfers: [AuditedTransfer] = []
    var activities: [String] = []
    var forwarded: [UInt8] = []
    /// Everything the user receives: the asset's bytes as passed plus the gateway's own replies, in order.
    var toUser: [UInt8] = []
    var maxBuffered = 0
    let auditor: SFTPAuditor

    init(policy: SFTPAuditor.Policy = .init()) {
        weak var sink: SFTPHarness?
        auditor = SFTPAuditor(policy: policy, now: { Date(timeIntervalSince1970: 1_800_000_000) },
                              events: .init(transfer: { sink?.transfers.append($0) }, activity: { sink?.activities.append("\($0) \($1)") }))
        sink = self
    }

    func client(_ bytes: [UInt8]) throws {
        let verdict = try auditor.clientBytes(bytes)
        forwarded += verdict.forward
        toUser += verdict.replyToClient
        maxBuffered = max(maxBuffered, auditor.bufferedBytes)
    }

    func server(_ bytes: [UInt8]) throws {
        toUser += try auditor.serverBytes(bytes)
        maxBuffered = max(maxBuffered, auditor.bufferedBytes)
    }

    /// Plays a script, each leg cut into chunks of `chunk` bytes (0: whole).
    func play(_ script: [Leg], chunk: Int = 0) throws {
        for leg in script {
            switch leg {
            case .client(let bytes): try feed(bytes, chunk, client)
            case .server(let bytes): try feed(bytes, chunk, server)
            }
        }
    }

    private func feed(_ bytes: [UInt8], _ chunk: Int, _ to: ([UInt8]) throws -> Void) throws {
        guard chunk > 0 else { return try to(bytes) }
        var i = 0
        while i < bytes.count {
            try to(Array(bytes[i..<min(bytes.count, i + chunk)]))
            i += chunk
        }
    }
}

func sha256Hex(_ bytes: [UInt8]) -> String {
    SHA256.hash(data: Data(bytes)).map { String(format: "%02x", $0) }.joined()
}

final class SFTPAuditorTests: XCTestCase {
    typealias W = SFTPWire
    let hello: [Leg] = [.client(W.initPacket()), .server(W.version())]
    let h1: [UInt8] = [0, 0, 0, 1]

    func pattern(_ count: Int, seed: UInt8 = 7) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) } }

    func clientBytes(_ script: [Leg]) -> [UInt8] { script.flatMap { if case .client(let b) = $0 { return b } else { return [] } } }
    func serverBytes(_ script: [Leg]) -> [UInt8] { script.flatMap { if case .server(let b) = $0 { return b } else { return [] } } }

    /// An upload as OpenSSH's sftp `put` does it: OPEN, pipelined WRITEs of `block` bytes, CLOSE.
    func uploadScript(_ content: [UInt8], path: String = "/tmp/up.bin", block: Int = 32768, handle: [UInt8]? = nil, firstID: UInt32 = 1) -> [Leg] {
        let handle = handle ?? h1
        var script: [Leg] = [.client(W.open(firstID, path, W.upload)), .server(W.handle(firstID, handle))]
        var id = firstID + 1
        var writes: [UInt8] = [], acks: [UInt8] = []
        var offset = 0
        while offset < content.count {
            let end = min(content.count, offset + block)
            writes += W.write(id, handle, UInt64(offset), Array(content[offset..<end]))
            acks += W.status(id, 0, "Success")
            id += 1
            offset = end
        }
        if !writes.isEmpty { script += [.client(writes), .server(acks)] }
        script += [.client(W.close(id, handle)), .server(W.status(id, 0, "Success"))]
        return script
    }

    /// A download as `get` does it: OPEN, READs until EOF, CLOSE.
    func downloadScript(_ content: [UInt8], path: String = "/srv/down.bin", block: Int = 32768, handle: [UInt8]? = nil, firstID: UInt32 = 1) -> [Leg] {
        let handle = handle ?? h1
        var script: [Leg] = [.client(W.open(firstID, path, W.READ)), .server(W.handle(firstID, handle))]
        var id = firstID + 1
        var offset = 0
        while true {
            script.append(.client(W.read(id, handle, UInt64(offset), UInt32(block))))
            if offset >= content.count {
                script.append(.server(W.status(id, 1, "End of file")))
                id += 1
                break
            }
            let end = min(content.count, offset + block)
            script.append(.server(W.data(id, Array(content[offset..<end]))))
            id += 1
            offset = end
        }
        script += [.client(W.close(id, handle)), .server(W.status(id, 0, "Success"))]
        return script
    }

    // MARK: Transfers

    func testUploadsOfSeveralSizesHashTheirContent() throws {
        for size in [0, 1, 100, 32768, 32769, 200_000] {
            let content = pattern(size)
            let h = SFTPHarness()
            let script = hello + uploadScript(content)
            try h.play(script)
            XCTAssertTrue(h.forwarded == clientBytes(script), "size \(size)")
            XCTAssertTrue(h.toUser == serverBytes(script))
            XCTAssertEqual(h.transfers.count, 1, "size \(size)")
            let t = try XCTUnwrap(h.transfers.first)
            XCTAssertEqual(t.direction, .upload)
            XCTAssertEqual(t.path, "/tmp/up.bin")
            XCTAssertEqual(t.bytes, size)
            XCTAssertEqual(t.result, "ok")
            XCTAssertEqual(t.sha256, sha256Hex(content), "size \(size)")
            XCTAssertEqual(h.auditor.outstandingRequests, 0)
            XCTAssertEqual(h.auditor.openFiles, 0)
        }
    }

    func testDownloadsOfSeveralSizesHashTheirContent() throws {
        for size in [0, 1, 100, 32768, 32769, 200_000] {
            let content = pattern(size, seed: 99)
            let h = SFTPHarness()
            let script = hello + downloadScript(content)
            try h.play(script)
            XCTAssertTrue(h.forwarded == clientBytes(script))
            XCTAssertTrue(h.toUser == serverBytes(script))
            XCTAssertEqual(h.transfers.count, 1, "size \(size)")
            let t = try XCTUnwrap(h.transfers.first)
            XCTAssertEqual(t.direction, .download)
            XCTAssertEqual(t.path, "/srv/down.bin")
            XCTAssertEqual(t.bytes, size)
            XCTAssertEqual(t.result, "ok")
            XCTAssertEqual(t.sha256, sha256Hex(content), "size \(size)")
            XCTAssertEqual(h.auditor.outstandingRequests, 0)
        }
    }

    func testPipelinedDownloadRepliesMatchedByID() throws {
        // Three READs outstanding at once, answered in order; a short last block, then EOF.
        let content = pattern(2500)
        let script = hello + [
            .client(W.open(1, "/f", W.READ)), .server(W.handle(1, h1)),
            .client(W.read(2, h1, 0, 1000) + W.read(3, h1, 1000, 1000) + W.read(4, h1, 2000, 1000) + W.read(5, h1, 3000, 1000)),
            .server(W.data(2, Array(content[0..<1000])) + W.data(3, Array(content[1000..<2000])) + W.data(4, Array(content[2000...]))
                + W.status(5, 1, "EOF")),
            .client(W.close(6, h1)), .server(W.status(6, 0)),
        ]
        let h = SFTPHarness()
        try h.play(script)
        XCTAssertEqual(h.transfers.map(\.sha256), [sha256Hex(content)])
        XCTAssertEqual(h.transfers.first?.bytes, 2500)
    }

    func testOutOfOrderOrGappedContentHasNoHash() throws {
        let content = pattern(3000)
        // Writes out of order.
        var h = SFTPHarness()
        try h.play(hello + [
            .client(W.open(1, "/w", W.upload)), .server(W.handle(1, h1)),
            .client(W.write(2, h1, 1000, Array(content[1000...])) + W.write(3, h1, 0, Array(content[0..<1000]))),
            .server(W.status(2, 0) + W.status(3, 0)),
            .client(W.close(4, h1)), .server(W.status(4, 0)),
        ])
        XCTAssertEqual(h.transfers.count, 1)
        XCTAssertEqual(h.transfers.first?.bytes, 3000)
        XCTAssertNil(h.transfers.first?.sha256)
        XCTAssertEqual(h.transfers.first?.result, "ok")

        // A gap in the writes.
        h = SFTPHarness()
        try h.play(hello + [
            .client(W.open(1, "/w", W.upload)), .server(W.handle(1, h1)),
            .client(W.write(2, h1, 0, Array(content[0..<1000])) + W.write(3, h1, 2000, Array(content[2000...]))),
            .server(W.status(2, 0) + W.status(3, 0)),
            .client(W.close(4, h1)), .server(W.status(4, 0)),
        ])
        XCTAssertNil(h.transfers.first?.sha256)
        XCTAssertEqual(h.transfers.first?.bytes, 2000)

        // Reads not from 0.
        h = SFTPHarness()
        try h.play(hello + [
            .client(W.open(1, "/r", W.READ)), .server(W.handle(1, h1)),
            .client(W.read(2, h1, 10, 100)), .server(W.data(2, Array(content[10..<110]))),
            .client(W.close(3, h1)), .server(W.status(3, 0)),
        ])
        XCTAssertEqual(h.transfers.first?.direction, .download)
        XCTAssertEqual(h.transfers.first?.bytes, 100)
        XCTAssertNil(h.transfers.first?.sha256)

        // A short read followed by a read past it: a gap.
        h = SFTPHarness()
        try h.play(hello + [
            .client(W.open(1, "/r", W.READ)), .server(W.handle(1, h1)),
            .client(W.read(2, h1, 0, 100) + W.read(3, h1, 100, 100)),
            .server(W.data(2, Array(content[0..<50])) + W.data(3, Array(content[100..<200]))),
            .client(W.close(4, h1)), .server(W.status(4, 0)),
        ])
        XCTAssertNil(h.transfers.first?.sha256)
        XCTAssertEqual(h.transfers.first?.bytes, 150)
    }

    func testReadWriteFileReportsBothDirections() throws {
        let h = SFTPHarness()
        try h.play(hello + [
            .client(W.open(1, "/rw", W.READ | W.WRITE)), .server(W.handle(1, h1)),
            .client(W.read(2, h1, 0, 10)), .server(W.data(2, [1, 2, 3])),
            .client(W.write(3, h1, 0, [9, 9])), .server(W.status(3, 0)),
            .client(W.close(4, h1)), .server(W.status(4, 0)),
        ])
        XCTAssertEqual(h.transfers.map(\.direction), [.upload, .download])
        XCTAssertEqual(h.transfers.map(\.bytes), [2, 3])
        XCTAssertEqual(h.transfers.map(\.sha256), [sha256Hex([9, 9]), sha256Hex([1, 2, 3])])
    }

    func testFailedOpenIsReportedWithTheStatus() throws {
        let h = SFTPHarness()
        try h.play(hello + [
            .client(W.open(7, "/nope", W.READ)), .server(W.status(7, 2, "No such file")),
            .client(W.open(8, "/root/x", W.upload)), .server(W.status(8, 3, "Permission denied")),
        ])
        XCTAssertEqual(h.transfers.map(\.direction), [.download, .upload])
        XCTAssertEqual(h.transfers.map(\.result), ["no such file: No such file", "permission denied: Permission denied"])
        XCTAssertEqual(h.transfers.map(\.bytes), [0, 0])
        XCTAssertEqual(h.transfers.map(\.sha256), [nil, nil])
        XCTAssertEqual(h.auditor.outstandingRequests, 0)
    }

    func testFailedWriteOrCloseBecomesTheResult() throws {
        var h = SFTPHarness()
        try h.play(hello + [
            .client(W.open(1, "/full", W.upload)), .server(W.handle(1, h1)),
            .client(W.write(2, h1, 0, [1, 2, 3])), .server(W.status(2, 4, "No space left on device")),
            .client(W.close(3, h1)), .server(W.status(3, 0)),
        ])
        XCTAssertEqual(h.transfers.first?.result, "failure: No space left on device")

        h = SFTPHarness()
        try h.play(hello + [
            .client(W.open(1, "/f", W.upload)), .server(W.handle(1, h1)),
            .client(W.write(2, h1, 0, [1])), .server(W.status(2, 0)),
            .client(W.close(3, h1)), .server(W.status(3, 4, "close failed")),
        ])
        XCTAssertEqual(h.transfers.first?.result, "failure: close failed")
        XCTAssertEqual(h.auditor.openFiles, 0)

        // A read error other than EOF.
        h = SFTPHarness()
        try h.play(hello + [
            .client(W.open(1, "/f", W.READ)), .server(W.handle(1, h1)),
            .client(W.read(2, h1, 0, 10)), .server(W.status(2, 4, "Input/output error")),
            .client(W.close(3, h1)), .server(W.status(3, 0)),
        ])
        XCTAssertEqual(h.transfers.first?.result, "failure: Input/output error")
    }

    func testStatusWithoutMessageFromOldServers() throws {
        let h = SFTPHarness()
        try h.play(hello + [.client(W.open(1, "/x", W.READ)), .server(W.packet(101, W.u32(1) + W.u32(2)))])
        XCTAssertEqual(h.transfers.first?.result, "no such file")
    }

    func testSeveralFilesOpenAtOnceWithLongHandles() throws {
        let a: [UInt8] = Array("handle-number-one".utf8), b: [UInt8] = Array("handle-number-two".utf8)
        let h = SFTPHarness()
        try h.play(hello + [
            .client(W.open(1, "/a", W.upload) + W.open(2, "/b", W.READ)), .server(W.handle(2, b) + W.handle(1, a)),
            .client(W.write(3, a, 0, [1, 2]) + W.read(4, b, 0, 100)), .server(W.data(4, [5, 6, 7]) + W.status(3, 0)),
            .client(W.close(5, b) + W.close(6, a)), .server(W.status(6, 0) + W.status(5, 0)),
        ])
        XCTAssertEqual(h.transfers.map(\.path), ["/a", "/b"])
        XCTAssertEqual(h.transfers.map(\.sha256), [sha256Hex([1, 2]), sha256Hex([5, 6, 7])])
    }

    func testOpenWithoutReadsOrWritesIsNoTransfer() throws {
        let h = SFTPHarness()
        try h.play(hello + [
            .client(W.open(1, "/r", W.READ)), .server(W.handle(1, h1)),
            .client(W.close(2, h1)), .server(W.status(2, 0)),
        ])
        XCTAssertEqual(h.transfers, [])
    }

    func testFinishReportsOpenFilesAsIncomplete() throws {
        let h = SFTPHarness()
        try h.play(hello + [
            .client(W.open(1, "/big", W.upload)), .server(W.handle(1, h1)),
            .client(W.write(2, h1, 0, pattern(10))),
            .client(W.remove(3, "/gone")),
        ])
        // Half of a second WRITE.
        let half = W.write(4, h1, 10, pattern(100))
        try h.client(Array(half[0..<60]))
        XCTAssertEqual(h.transfers, [])
        h.auditor.finish()
        XCTAssertEqual(h.transfers.count, 1)
        XCTAssertEqual(h.transfers.first?.result, "incomplete")
        XCTAssertEqual(h.transfers.first?.bytes, 10 + 60 - 29)
        XCTAssertEqual(h.activities, ["remove /gone: incomplete"])
        h.auditor.finish()
        XCTAssertEqual(h.transfers.count, 1)
        XCTAssertEqual(h.auditor.bufferedBytes, 0)
    }

    // MARK: Policy

    func testRefusedUploadIsAnsweredByTheGateway() throws {
        let h = SFTPHarness(policy: .init(allowUpload: false))
        try h.play(hello)
        let stat = W.packet(17, W.u32(41) + W.str("/tmp"))
        let verdict = try h.auditor.clientBytes(W.open(42, "/tmp/up", W.upload) + stat)
        XCTAssertEqual(verdict.forward, stat)
        XCTAssertEqual(verdict.replyToClient, W.status(42, 3, SFTPAuditor.uploadRefusal))
        XCTAssertEqual(h.transfers.count, 1)
        XCTAssertEqual(h.transfers.first?.result, "refused")
        XCTAssertEqual(h.transfers.first?.direction, .upload)
        XCTAssertEqual(h.transfers.first?.path, "/tmp/up")
        XCTAssertEqual(h.auditor.outstandingRequests, 0)

        // Each write-ish flag alone is an upload; reading stays allowed.
        for flags in [W.WRITE, W.CREAT, W.TRUNC, W.APPEND, W.READ | W.WRITE] {
            let v = try h.auditor.clientBytes(W.open(50, "/x", flags))
            XCTAssertEqual(v.forward, [], "flags \(flags)")
            XCTAssertEqual(v.replyToClient, W.status(50, 3, SFTPAuditor.uploadRefusal))
        }
        let read = W.open(51, "/x", W.READ)
        XCTAssertEqual(try h.auditor.clientBytes(read), .init(forward: read, replyToClient: []))

        // A WRITE on a handle the gateway never saw opened for writing is refused too, data dropped.
        let write = W.write(60, [9, 9, 9, 9], 0, pattern(5000))
        let v = try h.auditor.clientBytes(write + stat)
        XCTAssertEqual(v.forward, stat)
        XCTAssertEqual(v.replyToClient, W.status(60, 3, SFTPAuditor.uploadRefusal))
    }

    func testRefusedDownloadIsAnsweredByTheGateway() throws {
        let h = SFTPHarness(policy: .init(allowDownload: false))
        try h.play(hello)
        for flags in [W.READ, 0, W.CREAT, W.READ | W.WRITE] {
            let v = try h.auditor.clientBytes(W.open(9, "/etc/shadow", flags))
            XCTAssertEqual(v.forward, [], "flags \(flags)")
            XCTAssertEqual(v.replyToClient, W.status(9, 3, SFTPAuditor.downloadRefusal))
        }
        XCTAssertEqual(h.transfers.map(\.result), ["refused", "refused", "refused", "refused"])
        XCTAssertEqual(h.transfers.first?.direction, .download)
        // Writing only is an upload: allowed.
        let up = W.open(10, "/tmp/u", W.upload)
        XCTAssertEqual(try h.auditor.clientBytes(up).forward, up)
        // A READ on an unknown handle is refused.
        let read = W.read(11, [7, 7, 7, 7], 0, 100)
        XCTAssertEqual(try h.auditor.clientBytes(read), .init(forward: [], replyToClient: W.status(11, 3, SFTPAuditor.downloadRefusal)))
    }

    func testRefusalWaitsForTheAssetsPacketBoundary() throws {
        let h = SFTPHarness(policy: .init(allowUpload: false))
        try h.play(hello + [.client(W.open(1, "/r", W.READ)), .server(W.handle(1, h1)), .client(W.read(2, h1, 0, 1000))])
        let data = W.data(2, pattern(1000))
        var user = try h.auditor.serverBytes(Array(data[0..<500]))
        let v = try h.auditor.clientBytes(W.open(3, "/w", W.upload))
        XCTAssertEqual(v, .init(forward: [], replyToClient: []))
        XCTAssertGreaterThan(h.auditor.bufferedBytes, 0)
        user += try h.auditor.serverBytes(Array(data[500...]) + W.status(4, 0))
        XCTAssertEqual(user, data + W.status(3, 3, SFTPAuditor.uploadRefusal) + W.status(4, 0))
        XCTAssertEqual(h.auditor.bufferedBytes, 0)
    }

    // MARK: Activities

    func testFileSystemChangesAreActivities() throws {
        let attrs = W.u32(0x04) + W.u32(0o100644)
        let script = hello + [
            .client(W.packet(13, W.u32(1) + W.str("/tmp/a"))), .server(W.status(1, 0, "Success")),
            .client(W.packet(18, W.u32(2) + W.str("/tmp/b") + W.str("/tmp/c"))), .server(W.status(2, 4, "Failure")),
            .client(W.extended(3, "posix-rename@openssh.com", W.str("/tmp/c") + W.str("/tmp/d"))), .server(W.status(3, 0)),
            .client(W.packet(14, W.u32(4) + W.str("/tmp/dir") + W.u32(0x04) + W.u32(0o40755))), .server(W.status(4, 0)),
            .client(W.packet(15, W.u32(5) + W.str("/tmp/dir"))), .server(W.status(5, 2, "No such file")),
            .client(W.packet(9, W.u32(6) + W.str("/tmp/d") + attrs)), .server(W.status(6, 0)),
            .client(W.packet(20, W.u32(7) + W.str("target") + W.str("/tmp/link"))), .server(W.status(7, 0)),
            .client(W.extended(8, "hardlink@openssh.com", W.str("/tmp/d") + W.str("/tmp/e"))), .server(W.status(8, 0)),
            .client(W.open(9, "/tmp/f", W.upload)), .server(W.handle(9, h1)),
            .client(W.packet(10, W.u32(10) + W.bytes(h1) + W.u32(0x0B) + W.u64(5) + W.u32(1) + W.u32(2) + W.u32(3) + W.u32(4))),
            .server(W.status(10, 0)),
            .client(W.extended(11, "lsetstat@openssh.com", W.str("/tmp/link") + W.u32(0))), .server(W.status(11, 0)),
        ]
        let h = SFTPHarness()
        try h.play(script)
        XCTAssertEqual(h.activities, [
            "remove /tmp/a: ok",
            "rename /tmp/b -> /tmp/c: failure: Failure",
            "rename /tmp/c -> /tmp/d: ok",
            "mkdir /tmp/dir (mode 0755): ok",
            "rmdir /tmp/dir: no such file: No such file",
            "setstat /tmp/d (mode 0644): ok",
            "symlink /tmp/link -> target: ok",
            "hardlink /tmp/e -> /tmp/d: ok",
            "setstat /tmp/f (size 5, uid 1 gid 2, atime 3 mtime 4): ok",
            "setstat /tmp/link: ok",
        ])
        XCTAssertTrue(h.forwarded == clientBytes(script))
        XCTAssertEqual(h.auditor.outstandingRequests, 0)
    }

    func testExtensionsAndUnknownPacketsPassUntouched() throws {
        let h = SFTPHarness()
        try h.play(hello + [.client(W.open(1, "/f", W.upload)), .server(W.handle(1, h1))])
        let h2: [UInt8] = [0, 0, 0, 2]
        let requests = W.extended(2, "statvfs@openssh.com", W.str("/"))
            + W.extended(3, "fsync@openssh.com", W.bytes(h1))
            + W.extended(4, "limits@openssh.com", [])
            + W.extended(5, "expand-path@openssh.com", W.str("~/x"))
            + W.extended(6, "copy-data", W.bytes(h2) + W.u64(0) + W.u64(0) + W.bytes(h1) + W.u64(0))
            + W.extended(7, "home-directory", W.str("alice"))
            + W.extended(8, "vendor-thing@example.com", pattern(3000))
            + W.packet(250, pattern(77))
            + W.packet(16, W.u32(9) + W.str("."))
            + W.packet(11, W.u32(10) + W.str("/tmp"))
            + W.packet(12, W.u32(11) + W.bytes(h2))
            + W.packet(7, W.u32(12) + W.str("/tmp")) + W.packet(17, W.u32(13) + W.str("/tmp")) + W.packet(8, W.u32(14) + W.bytes(h1))
            + W.packet(19, W.u32(15) + W.str("/tmp/link"))
        let v = try h.auditor.clientBytes(requests)
        XCTAssertEqual(v.forward, requests)
        XCTAssertEqual(v.replyToClient, [])
        let replies = W.packet(201, W.u32(2) + pattern(88)) + W.status(3, 0) + W.packet(201, W.u32(4) + W.u64(1))
            + W.packet(104, W.u32(5) + W.u32(1) + W.str("/home/x") + W.str("/home/x") + W.u32(0)) + W.status(6, 0)
            + W.packet(104, W.u32(9) + W.u32(1) + W.str("/home") + W.str("") + W.u32(0))
            + W.packet(105, W.u32(13) + W.u32(0)) + W.packet(199, pattern(10))
        XCTAssertEqual(try h.auditor.serverBytes(replies), replies)
        // copy-data made the file's content unknown to the gateway.
        try h.play([.client(W.close(20, h1)), .server(W.status(20, 0))])
        XCTAssertEqual(h.transfers.count, 1)
        XCTAssertNil(h.transfers.first?.sha256)
        XCTAssertEqual(h.activities, ["copy handle 00000002 -> /f: ok"])
    }

    // MARK: Chunking

    /// A session with every kind of packet, for the chunking tests.
    func mixedScript(small: Bool = false) -> [Leg] {
        let long: [UInt8] = Array("a-longer-handle-of-20".utf8)
        return hello + uploadScript(pattern(small ? 3000 : 70_000), path: "/up/one", block: small ? 1024 : 32768, handle: long, firstID: 1)
            + downloadScript(pattern(small ? 2000 : 40_000, seed: 3), path: "/down/two", block: small ? 1000 : 16384, firstID: 100)
            + uploadScript([], path: "/up/empty", firstID: 200)
            + [.client(W.packet(13, W.u32(300) + W.str("/tmp/a"))), .server(W.status(300, 0)),
               .client(W.open(301, "/missing", W.READ)), .server(W.status(301, 2, "No such file")),
               .client(W.extended(302, "statvfs@openssh.com", W.str("/"))), .server(W.packet(201, W.u32(302) + pattern(88))),
               .client(W.open(303, "/refused", W.upload))]
    }

    func testOneByteAtATimeGivesTheSameResult() throws {
        let script = mixedScript()
        let whole = SFTPHarness(policy: .init(allowUpload: true))
        try whole.play(script)
        XCTAssertEqual(whole.transfers.count, 4)
        XCTAssertEqual(whole.activities, ["remove /tmp/a: ok"])
        for chunk in [1, 2, 3, 7, 13, 100, 4096] {
            let h = SFTPHarness()
            try h.play(script, chunk: chunk)
            XCTAssertEqual(h.transfers, whole.transfers, "chunk \(chunk)")
            XCTAssertEqual(h.activities, whole.activities)
            XCTAssertTrue(h.forwarded == whole.forwarded)
            XCTAssertTrue(h.toUser == whole.toUser)
            XCTAssertLessThanOrEqual(h.maxBuffered, 96) // VERSION with its extensions is the largest held packet
        }
        // The same with uploads refused: the last OPEN is answered in every chunking.
        let refused = SFTPHarness(policy: .init(allowUpload: false))
        try refused.play(script, chunk: 1)
        XCTAssertEqual(Array(refused.toUser.suffix(W.status(303, 3, SFTPAuditor.uploadRefusal).count)),
                       W.status(303, 3, SFTPAuditor.uploadRefusal))
    }

    func testManyPacketsInOneChunk() throws {
        // Three files at once: every phase of the conversation is one chunk per direction.
        let a = pattern(50_000), b = pattern(1), c = pattern(70_000, seed: 5)
        let ha = W.u32(10), hb = W.u32(11), hc = W.u32(12)
        let script: [Leg] = [
            .client(W.initPacket() + W.open(1, "/a", W.upload) + W.open(2, "/b", W.upload) + W.open(3, "/c", W.READ)),
            .server(W.version() + W.handle(1, ha) + W.handle(3, hc) + W.handle(2, hb)),
            .client(W.write(4, ha, 0, Array(a[0..<32768])) + W.write(5, hb, 0, b) + W.read(6, hc, 0, 65536)
                + W.write(7, ha, 32768, Array(a[32768...])) + W.read(8, hc, 65536, 65536) + W.read(9, hc, 131072, 65536)),
            .server(W.status(4, 0) + W.data(6, Array(c[0..<65536])) + W.status(5, 0) + W.status(7, 0)
                + W.data(8, Array(c[65536...])) + W.status(9, 1, "EOF")),
            .client(W.close(10, ha) + W.close(11, hb) + W.close(12, hc)),
            .server(W.status(12, 0) + W.status(10, 0) + W.status(11, 0)),
        ]
        let h = SFTPHarness()
        try h.play(script)
        XCTAssertTrue(h.forwarded == clientBytes(script))
        XCTAssertTrue(h.toUser == serverBytes(script))
        XCTAssertEqual(h.transfers.map(\.path), ["/c", "/a", "/b"])
        XCTAssertEqual(h.transfers.map(\.direction), [.download, .upload, .upload])
        XCTAssertEqual(h.transfers.map(\.bytes), [70_000, 50_000, 1])
        XCTAssertEqual(h.transfers.map(\.sha256), [sha256Hex(c), sha256Hex(a), sha256Hex(b)])
        // And one byte at a time.
        let slow = SFTPHarness()
        try slow.play(script, chunk: 1)
        XCTAssertEqual(slow.transfers, h.transfers)
        XCTAssertTrue(slow.forwarded == h.forwarded)
    }

    func testRandomChunkingGivesTheSameResult() throws {
        let script = mixedScript()
        let whole = SFTPHarness()
        try whole.play(script)
        var rng = SeededRandom(seed: 42)
        for _ in 0..<20 {
            let h = SFTPHarness()
            for leg in script {
                let bytes: [UInt8]
                let to: ([UInt8]) throws -> Void
                switch leg {
                case .client(let b): bytes = b; to = h.client
                case .server(let b): bytes = b; to = h.server
                }
                var i = 0
                while i < bytes.count {
                    let k = Int.random(in: 1...5000, using: &rng)
                    try to(Array(bytes[i..<min(bytes.count, i + k)]))
                    i += k
                }
            }
            XCTAssertEqual(h.transfers, whole.transfers)
            XCTAssertTrue(h.forwarded == whole.forwarded)
            XCTAssertTrue(h.toUser == whole.toUser)
        }
    }

    // MARK: Hostile streams

    func assertMalformed(_ script: [Leg], _ message: String? = nil, policy: SFTPAuditor.Policy = .init(),
                         file: StaticString = #filePath, line: UInt = #line) {
        let h = SFTPHarness(policy: policy)
        do {
            try h.play(script)
            XCTFail("expected malformed", file: file, line: line)
        } catch let SFTPAuditor.Failure.malformed(text) {
            if let message { XCTAssertTrue(text.contains(message), text, file: file, line: line) }
            // Once broken, always broken.
            XCTAssertThrowsError(try h.auditor.clientBytes(W.initPacket()), file: file, line: line)
        } catch {
            XCTFail("\(error)", file: file, line: line)
        }
    }

    func testMalformedStreamsAreRefused() {
        assertMalformed([.client(W.u32(300_000) + [1])], "exceeds the limit")
        assertMalformed([.client(W.u32(0) + [1, 2, 3, 4])], "length 0")
        assertMalformed([.client(W.open(1, "/x", W.READ))], "INIT")
        assertMalformed([.client(W.initPacket()), .server(W.version(4))], "version 4")
        assertMalformed([.client(W.initPacket()), .server(W.status(1, 0))], "VERSION")
        // A string longer than its packet.
        assertMalformed(hello + [.client(W.packet(3, W.u32(1) + W.u32(1000) + Array("/x".utf8)))], "exceeds its packet")
        assertMalformed(hello + [.client(W.packet(13, W.u32(1)))], "exceeds its packet")
        // WRITE whose handle or data overrun the frame.
        assertMalformed(hello + [.client(W.packet(6, W.u32(1) + W.u32(500) + [1, 2, 3] + W.u64(0) + W.u32(0)))], "WRITE")
        assertMalformed(hello + [.client(W.packet(6, W.u32(1) + W.bytes(h1) + W.u64(0) + W.u32(100) + [1, 2]))], "WRITE data")
        assertMalformed(hello + [.client(W.packet(6, W.u32(1) + [0, 0]))], "WRITE")
        assertMalformed(hello + [.client(W.open(1, "/r", W.READ)), .server(W.packet(103, W.u32(1) + W.u32(50) + [1]))], "DATA")
        assertMalformed(hello + [.client(W.open(1, "/r", W.READ)), .server(W.handle(1, pattern(300)))], "handle")
        // Too many requests outstanding or files open.
        let policy = SFTPAuditor.Policy(maxOutstandingRequests: 10, maxOpenFiles: 3)
        assertMalformed(hello + [.client((1...11).flatMap { W.packet(13, W.u32(UInt32($0)) + W.str("/x")) })], "outstanding", policy: policy)
        assertMalformed(hello + [.client((1...4).flatMap { W.open(UInt32($0), "/x", W.READ) }),
                                 .server((1...4).flatMap { W.handle(UInt32($0), W.u32(UInt32($0))) })], "open", policy: policy)
    }

    func testDefaultLimitsAreTheBriefs() {
        let policy = SFTPAuditor.Policy()
        XCTAssertEqual(policy.maxPacket, 256 * 1024 + 1024)
        XCTAssertEqual(policy.maxOutstandingRequests, 10_000)
        XCTAssertEqual(policy.maxOpenFiles, 1_000)
        XCTAssertTrue(policy.allowUpload && policy.allowDownload)
    }

    func testLongPathsAreCapped() throws {
        let h = SFTPHarness()
        try h.play(hello + [.client(W.packet(13, W.u32(1) + W.str(String(repeating: "p", count: 100_000)))), .server(W.status(1, 0))])
        XCTAssertEqual(h.activities.first?.count, "remove ".count + 4096 + ": ok".count)
    }

    /// Random and mutated streams: never a crash, either processed or `malformed`, buffers bounded.
    func testFuzzedStreamsNeverCrashAndStayBounded() throws {
        var rng = SeededRandom(seed: 0x5F7A)
        let maxPacket = 4096
        let started = Date()
        var malformed = 0, processed = 0, rounds = 0
        let base = mixedScript(small: true)
        for round in 0..<3000 {
            if Date().timeIntervalSince(started) > 1.8 { break }
            rounds += 1
            let policy = SFTPAuditor.Policy(allowUpload: rng.next() % 2 == 0, allowDownload: rng.next() % 2 == 0, maxPacket: maxPacket,
                                            maxOutstandingRequests: 50, maxOpenFiles: 5)
            let h = SFTPHarness(policy: policy)
            var legs: [Leg]
            switch round % 3 {
            case 0: // random packets of random types, well framed
                legs = hello
                for _ in 0..<Int.random(in: 1...30, using: &rng) {
                    let type = UInt8.random(in: 0...255, using: &rng)
                    let body = (0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                    let leg = W.packet(type, W.u32(UInt32.random(in: 0...20, using: &rng)) + body)
                    legs.append(rng.next() % 2 == 0 ? .client(leg) : .server(leg))
                }
            case 1: // plausible packets with random fields
                legs = hello
                for _ in 0..<Int.random(in: 1...40, using: &rng) {
                    let id = UInt32.random(in: 0...30, using: &rng)
                    let handle = W.u32(UInt32.random(in: 0...3, using: &rng))
                    let pick = Int.random(in: 0...9, using: &rng)
                    let data = self.pattern(Int.random(in: 0...400, using: &rng), seed: UInt8.random(in: 0...255, using: &rng))
                    let packet: Leg
                    switch pick {
                    case 0: packet = .client(W.open(id, "/f\(id)", UInt32.random(in: 0...63, using: &rng)))
                    case 1: packet = .server(W.handle(id, handle))
                    case 2: packet = .client(W.write(id, handle, UInt64.random(in: 0...5000, using: &rng), data))
                    case 3: packet = .client(W.read(id, handle, UInt64.random(in: 0...5000, using: &rng), 3000))
                    case 4: packet = .server(W.data(id, data))
                    case 5: packet = .server(W.status(id, UInt32.random(in: 0...9, using: &rng), "m"))
                    case 6: packet = .client(W.close(id, handle))
                    case 7: packet = .client(W.packet(18, W.u32(id) + W.str("/a") + W.str("/b")))
                    case 8: packet = .client(W.extended(id, "copy-data", handle + W.u64(0) + W.u64(9) + handle + W.u64(0)))
                    default: packet = .client(W.packet(9, W.u32(id) + W.str("/s") + W.u32(UInt32.random(in: 0...15, using: &rng))))
                    }
                    legs.append(packet)
                }
            default: // the real session, mutated
                legs = base.map { leg in
                    func mutate(_ b: [UInt8]) -> [UInt8] {
                        var b = b
                        guard !b.isEmpty, rng.next() % 4 == 0 else { return b }
                        for _ in 0..<Int.random(in: 1...4, using: &rng) {
                            let i = Int.random(in: 0..<b.count, using: &rng)
                            switch rng.next() % 3 {
                            case 0: b[i] = UInt8.random(in: 0...255, using: &rng)
                            case 1: b.remove(at: i); if b.isEmpty { return b }
                            default: b.insert(UInt8.random(in: 0...255, using: &rng), at: i)
                            }
                        }
                        return b
                    }
                    switch leg {
                    case .client(let b): return .client(mutate(b))
                    case .server(let b): return .server(mutate(b))
                    }
                }
            }
            let chunk = [0, 0, 1, 3, 17, 17, 1000, 1000][Int.random(in: 0...7, using: &rng)]
            do {
                try h.play(legs, chunk: chunk)
                processed += 1
            } catch SFTPAuditor.Failure.malformed {
                malformed += 1
            }
            h.auditor.finish()
            XCTAssertLessThanOrEqual(h.maxBuffered, 2 * (maxPacket + 4) + SFTPAuditor.maxPendingReplies + 200)
            XCTAssertLessThanOrEqual(h.auditor.outstandingRequests, 50)
            XCTAssertLessThanOrEqual(h.auditor.openFiles, 5)
        }
        XCTAssertGreaterThan(malformed, 10)
        XCTAssertGreaterThan(processed, 10)
        print("SFTP fuzz: \(rounds) rounds, \(processed) processed, \(malformed) malformed")
    }

    func testBuffersStayWithinOnePacketForHugeWrites() throws {
        let h = SFTPHarness()
        try h.play(hello + [.client(W.open(1, "/big", W.upload)), .server(W.handle(1, h1))])
        let content = pattern(240_000)
        let write = W.write(2, h1, 0, content)
        h.forwarded = []
        var i = 0
        while i < write.count {
            let v = try h.auditor.clientBytes(Array(write[i..<min(write.count, i + 1000)]))
            XCTAssertLessThanOrEqual(h.auditor.bufferedBytes, 64)
            h.forwarded += v.forward
            i += 1000
        }
        XCTAssertTrue(h.forwarded == write)
        try h.play([.server(W.status(2, 0)), .client(W.close(3, h1)), .server(W.status(3, 0))])
        XCTAssertEqual(h.transfers.first?.sha256, sha256Hex(content))
    }
}

extension SFTPWire {
    static func remove(_ id: UInt32, _ path: String) -> [UInt8] { packet(13, u32(id) + str(path)) }
}

/// SplitMix64: reproducible randomness for the fuzz tests.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
