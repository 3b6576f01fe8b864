import Dispatch
import Foundation
import GatehouseCore

// Recorder throughput: MB/s of terminal output turned into asciicast and written to disk, on
// one core (the session's queue encodes; the writer thread writes). Medians of several runs.

func terminalOutput(megabytes: Int) -> [UInt8] {
    // Shaped like a busy terminal: log lines with colours, some UTF-8, CR LF line ends.
    var line = Array("2026-11-25T10:00:00Z \u{1b}[32mINFO\u{1b}[0m request served path=/api/v1/items/42 status=200 took=3.2ms user=\"bob\" café ✓\r\n".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(megabytes << 20)
    var i = 0
    while out.count < megabytes << 20 {
        line[30] = UInt8(ascii: "0") + UInt8(i % 10)
        out += line
        i += 1
    }
    return out
}

func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }

let args = CommandLine.arguments
let megabytes = args.count > 1 ? Int(args[1]) ?? 256 : 256
let runs = args.count > 2 ? Int(args[2]) ?? 5 : 5
let data = terminalOutput(megabytes: megabytes)
var generator = SystemRandomNumberGenerator()
let binary = (0..<(megabytes << 17)).flatMap { _ in withUnsafeBytes(of: generator.next() as UInt64) { Array($0) } }
let dir = NSTemporaryDirectory() + "gatehouse-micro-\(getpid())"
try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: dir) }

func encodeOnly(_ input: [UInt8]) -> Double {
    var encoder = AsciicastEncoder()
    var out: [UInt8] = []
    out.reserveCapacity(300 * 1024)
    let start = DispatchTime.now()
    input.withUnsafeBytes { raw in
        var offset = 0
        while offset < raw.count {
            let n = min(16384, raw.count - offset)
            encoder.output(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + n)]), at: 1.5, to: &out)
            if out.count > 256 * 1024 { out.removeAll(keepingCapacity: true) }
            offset += n
        }
    }
    return Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}

func recordToDisk(_ input: [UInt8], run: Int) -> Double {
    let queue = DispatchQueue(label: "session")
    let done = DispatchSemaphore(value: 0)
    let path = "\(dir)/run\(run).cast"
    let start = DispatchTime.now()
    queue.async {
        let recorder = try! TerminalRecorder(path: path, width: 120, height: 40, term: "xterm", title: "bench",
                                             options: .init(), sessionQueue: queue, onFailure: { print("failure: \($0)") }, onDrain: {})
        input.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = min(16384, raw.count - offset)
                recorder.output(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + n)]))
                offset += n
            }
        }
        // Measure up to the moment the file is written and fsynced (compression happens later,
        // on its own thread, and is measured separately).
        recorder.closeWithoutCompressing { done.signal() }
    }
    done.wait()
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    unlink(path)
    return seconds
}

func gzipFile(_ input: [UInt8]) -> (Double, Double) {
    let path = "\(dir)/gz.cast"
    var encoder = AsciicastEncoder()
    var out = AsciicastEncoder.header(width: 80, height: 24, timestamp: 0, term: nil, title: nil)
    input.withUnsafeBytes { encoder.output($0, at: 0, to: &out) }
    FileManager.default.createFile(atPath: path, contents: Data(out))
    let start = DispatchTime.now()
    try! Gzip.compressFile(path, to: path + ".gz")
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    let ratio = Double(out.count) / Double((try? FileManager.default.attributesOfItem(atPath: path + ".gz")[.size] as? Int) ?? 1)
    unlink(path); unlink(path + ".gz")
    return (seconds, ratio)
}

let mb = Double(megabytes)
var results: [(String, [Double])] = []
let zeros = [UInt8](repeating: 0, count: megabytes << 20)
for (name, input) in [("terminal text", data), ("random bytes", binary), ("zero bytes", zeros)] {
    results.append(("encode only, \(name)", (0..<runs).map { _ in mb / encodeOnly(input) }))
    results.append(("record to disk, \(name)", (0..<runs).map { run in mb / recordToDisk(input, run: run) }))
}
func extract(_ input: [UInt8]) -> Double {
    let extractor = CommandExtractor(columns: 120, rows: 40, policy: CommandPolicy(rules: [], user: "u", asset: "a", account: "x"),
                                     hooks: .init(started: { _, _ in 0 }, finished: { _ in }))
    let start = DispatchTime.now()
    input.withUnsafeBytes { raw in
        var offset = 0
        while offset < raw.count {
            let n = min(16384, raw.count - offset)
            extractor.output(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + n)]))
            offset += n
        }
    }
    return Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}
results.append(("command extractor, terminal text", (0..<runs).map { _ in mb / extract(data) }))

let (gzSeconds, gzRatio) = gzipFile(data)
for (name, speeds) in results {
    print(String(format: "%-34@ median %7.0f MB/s  (min %.0f, max %.0f, %d runs of %d MiB)",
                 name as NSString, median(speeds), speeds.min()!, speeds.max()!, runs, megabytes))
}
print(String(format: "%-34@ %7.0f MB/s of asciicast, ratio %.1fx", "gzip level 1 at close, terminal text" as NSString,
             Double(megabytes) * 1.2 / gzSeconds, gzRatio))
