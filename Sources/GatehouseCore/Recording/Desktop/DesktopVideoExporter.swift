import Dispatch
import Foundation

/// Turns a desktop recording into an MP4 for people and tools outside Gatehouse.
///
/// The recording is replayed with `DesktopCanvas` and sampled at a fixed frame rate: frame n
/// shows the screen as it was n/fps seconds after the header's timestamp, up to the last record.
/// Idle stretches are kept at their real length (an audit record must not compress time);
/// repeated frames cost x264 next to nothing. Frames go to ffmpeg as raw RGBA on a pipe, all
/// of the first screen size: a later resize is scaled (nearest neighbour) into it.
public enum DesktopVideoExporter {
    public enum ExportError: Error, CustomStringConvertible {
        case ffmpegMissing(String)
        case ffmpegFailed(String)
        case badRecording(String)

        public var description: String {
            switch self {
            case .ffmpegMissing(let name):
                return "cannot export video: \(name) not found (install ffmpeg, e.g. apt-get install ffmpeg, or give its path)"
            case .ffmpegFailed(let why): return "video export failed: \(why)"
            case .badRecording(let why): return "cannot export video: \(why)"
            }
        }
    }

    /// Replays `recording` into `output` (overwritten) at `fps` frames a second.
    public static func exportMP4(recording: String, to output: String, fps: Int = 10, ffmpeg: String = "ffmpeg") throws {
        guard fps > 0, fps <= 120 else { throw ExportError.badRecording("frame rate \(fps) out of range (1...120)") }
        let reader: DesktopRecordingReader
        do {
            reader = try DesktopRecordingReader(path: recording)
        } catch {
            throw ExportError.badRecording("\(error)")
        }
        let width = reader.header.width, height = reader.header.height
        guard width > 0, height > 0, width * height <= DesktopCanvas.maxPixels else {
            throw ExportError.badRecording("\(recording) has no valid screen size (\(width)x\(height))")
        }
        guard let executable = resolve(ffmpeg) else { throw ExportError.ffmpegMissing(ffmpeg) }

        let encoder = try FFmpegPipe(executable: executable, arguments: [
            "-y", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgba", "-s", "\(width)x\(height)", "-r", "\(fps)", "-i", "-",
            "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", output,
        ])
        do {
            var canvas = try DesktopCanvas(width: width, height: height)
            var sampler = FrameSampler(width: width, height: height)
            var frame = 0
            var lastTime = 0
            var lastChange = 0
            /// Milliseconds from the start at which frame n is taken.
            func frameTime(_ n: Int) -> Int { n * 1000 / fps }
            while let timed = try reader.next() {
                // Frames before this record show the screen without it.
                while frameTime(frame) < timed.time {
                    try encoder.write(sampler.frame(of: canvas))
                    frame += 1
                }
                try canvas.apply(timed.record)
                lastTime = max(lastTime, timed.time)
                if case .end = timed.record { break }
                lastChange = max(lastChange, timed.time)
            }
            // The frames up to the last record's time, and one more if the last change came
            // after the last frame time (a recording cut short, e.g. by a killed gateway, would
            // otherwise end on the screen before its last changes).
            while frameTime(frame) <= lastTime {
                try encoder.write(sampler.frame(of: canvas))
                frame += 1
            }
            if frame == 0 || frameTime(frame - 1) < lastChange {
                try encoder.write(sampler.frame(of: canvas))
            }
        } catch let error as DesktopRecordingError {
            encoder.abort()
            unlink(output)
            throw ExportError.badRecording("\(recording): \(error)")
        } catch {
            encoder.abort()
            unlink(output)
            throw error
        }
        do {
            try encoder.finish()
        } catch {
            unlink(output)
            throw error
        }
    }

    /// The executable for `name`: a path as given, or the first match on PATH.
    static func resolve(_ name: String) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") where !dir.isEmpty {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}

/// Frames of a fixed output size from a canvas that may change size.
private struct FrameSampler {
    let width: Int
    let height: Int
    private var buffer: [UInt8] = []
    /// Source column for each output column, for the canvas width it was made for.
    private var columnMap: (sourceWidth: Int, sourceHeight: Int, columns: [Int], rows: [Int])?

    init(width: Int, height: Int) {
        self.width = width
        self.height = height
    }

    /// The canvas as an output frame: its own bytes when the size matches, else scaled.
    mutating func frame(of canvas: DesktopCanvas) -> [UInt8] {
        if canvas.width == width, canvas.height == height { return canvas.pixels }
        if buffer.count != width * height * 4 { buffer = [UInt8](repeating: 0, count: width * height * 4) }
        guard canvas.width > 0, canvas.height > 0 else {
            buffer = DesktopCanvas.black(width * height)
            return buffer
        }
        if columnMap?.sourceWidth != canvas.width || columnMap?.sourceHeight != canvas.height {
            columnMap = (canvas.width, canvas.height,
                         (0..<width).map { $0 * canvas.width / width },
                         (0..<height).map { $0 * canvas.height / height })
        }
        guard let map = columnMap else { return buffer }
        canvas.pixels.withUnsafeBytes { src in
            buffer.withUnsafeMutableBytes { dst in
                let s = src.bindMemory(to: UInt32.self), d = dst.bindMemory(to: UInt32.self)
                for y in 0..<height {
                    let sourceRow = map.rows[y] * canvas.width
                    let row = y * width
                    for x in 0..<width { d[row + x] = s[sourceRow + map.columns[x]] }
                }
            }
        }
        return buffer
    }
}

/// ffmpeg running with its stdin fed by us and its stderr collected for error messages.
private final class FFmpegPipe {
    private let process = Process()
    private let input = Pipe()
    private let errors = Pipe()
    private let collected = ErrorCollector()
    private let done = DispatchGroup()

    init(executable: String, arguments: [String]) throws {
        // A dying ffmpeg must give us EPIPE, not kill us with SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardInput = input
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw DesktopVideoExporter.ExportError.ffmpegMissing("\(executable) (\(error.localizedDescription))")
        }
        let handle = errors.fileHandleForReading
        let collected = self.collected
        done.enter()
        DispatchQueue.global().async { [done] in
            collected.set(handle.readDataToEndOfFile())
            done.leave()
        }
    }

    func write(_ bytes: [UInt8]) throws {
        let fd = input.fileHandleForWriting.fileDescriptor
        let failure: Int32? = bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return nil }
            var offset = 0
            while offset < raw.count {
                let n = Foundation.write(fd, base + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                offset += n
            }
            return nil
        }
        if let failure {
            // ffmpeg stopped reading: its own message says why.
            try? input.fileHandleForWriting.close()
            process.waitUntilExit()
            done.wait()
            throw DesktopVideoExporter.ExportError.ffmpegFailed(message(or: String(cString: strerror(failure))))
        }
    }

    /// Ends the input and waits; throws with ffmpeg's stderr when it failed.
    func finish() throws {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
        done.wait()
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            throw DesktopVideoExporter.ExportError.ffmpegFailed(message(or: "ffmpeg exited with status \(process.terminationStatus)"))
        }
    }

    func abort() {
        if process.isRunning { process.terminate() }
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
        done.wait()
    }

    private func message(or fallback: String) -> String {
        let text = collected.text.trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? fallback : "ffmpeg: \(text)"
    }
}

/// ffmpeg's stderr, read on another thread.
private final class ErrorCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ d: Data) { lock.withLock { data = d } }
    var text: String { lock.withLock { String(decoding: data.prefix(4096), as: UTF8.self) } }
}
