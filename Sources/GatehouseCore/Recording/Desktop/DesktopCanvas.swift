import Foundation

/// The screen a desktop recording shows at some moment: an RGBA framebuffer that records are
/// applied to in order. Every bound is checked, so a corrupt recording throws instead of
/// writing outside the buffer.
public struct DesktopCanvas: Sendable {
    /// Largest screen accepted (pixels): 8192 × 8192, far above any real monitor layout, far
    /// below what a corrupt u16 × u16 size would allocate.
    public static let maxPixels = 8192 * 8192

    public private(set) var width: Int
    public private(set) var height: Int
    /// width × height × 4 bytes, RGBA.
    public private(set) var pixels: [UInt8]
    /// Where the user's mouse was last seen, if ever.
    public private(set) var pointer: (x: Int, y: Int)?

    public init(width: Int, height: Int) throws {
        try Self.checkSize(width, height)
        self.width = width
        self.height = height
        self.pixels = Self.black(width * height)
    }

    /// Applies one record; EVENT and END change nothing.
    public mutating func apply(_ record: DesktopRecord) throws {
        switch record {
        case let .resize(width, height):
            try resize(width: width, height: height)
        case .tile(let tile):
            try draw(tile, kind: "TILE")
        case .keyframe(let tile):
            guard tile.x == 0, tile.y == 0 else {
                throw DesktopRecordingError.malformed("KEYFRAME at (\(tile.x),\(tile.y)) instead of (0,0)")
            }
            try Self.checkSize(tile.width, tile.height)
            // Inflate before touching the screen: a bad keyframe leaves the canvas as it was.
            let rgba = try tile.pixels()
            width = tile.width
            height = tile.height
            pixels = rgba
        case let .pointer(x, y):
            pointer = (x, y)
        case .event, .end:
            break
        }
    }

    public mutating func resize(width: Int, height: Int) throws {
        try Self.checkSize(width, height)
        self.width = width
        self.height = height
        pixels = Self.black(width * height)
    }

    private mutating func draw(_ tile: DesktopTile, kind: String) throws {
        guard tile.width > 0, tile.height > 0,
              tile.x >= 0, tile.y >= 0, tile.x + tile.width <= width, tile.y + tile.height <= height else {
            throw DesktopRecordingError.malformed(
                "\(kind) \(tile.width)x\(tile.height) at (\(tile.x),\(tile.y)) outside the \(width)x\(height) screen")
        }
        let rgba = try tile.pixels()
        let rowBytes = tile.width * 4
        let screenRow = width * 4
        rgba.withUnsafeBytes { src in
            pixels.withUnsafeMutableBytes { dst in
                guard let s = src.baseAddress, let d = dst.baseAddress else { return }
                for row in 0..<tile.height {
                    (d + (tile.y + row) * screenRow + tile.x * 4).copyMemory(from: s + row * rowBytes, byteCount: rowBytes)
                }
            }
        }
    }

    private static func checkSize(_ width: Int, _ height: Int) throws {
        guard width >= 0, height >= 0, width * height <= maxPixels else {
            throw DesktopRecordingError.malformed("screen size \(width)x\(height) out of range")
        }
    }

    /// Opaque black RGBA.
    static func black(_ count: Int) -> [UInt8] {
        var p = [UInt8](repeating: 0, count: count * 4)
        p.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt32.self)
            let opaque = UInt32(0xFF00_0000).littleEndian
            for i in 0..<count { words[i] = opaque }
        }
        return p
    }
}
