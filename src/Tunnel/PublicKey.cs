using System.Runtime.InteropServices;

namespace Gateway.Tunnel;

/// <summary>A 32-byte Curve25519 public key as a value type: the key of the peer table.
/// Public keys are not secret, so ordinary equality is fine here.</summary>
public readonly struct PublicKey : IEquatable<PublicKey>
{
    public const int Size = 32;
    private readonly ulong _a, _b, _c, _d;

    public PublicKey(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Size) throw new ArgumentException("A public key is 32 bytes.", nameof(bytes));
        _a = MemoryMarshal.Read<ulong>(bytes);
        _b = MemoryMarshal.Read<ulong>(bytes[8..]);
        _c = MemoryMarshal.Read<ulong>(bytes[16..]);
        _d = MemoryMarshal.Read<ulong>(bytes[24..]);
    }

    public void CopyTo(Span<byte> destination)
    {
        MemoryMarshal.Write(destination, in _a);
        MemoryMarshal.Write(destination[8..], in _b);
        MemoryMarshal.Write(destination[16..], in _c);
        MemoryMarshal.Write(destination[24..], in _d);
    }

    public byte[] ToArray()
    {
        var bytes = new byte[Size];
        CopyTo(bytes);
        return bytes;
    }

    public string ToHex() => Convert.ToHexStringLower(ToArray());
    public string ToBase64() => Convert.ToBase64String(ToArray());
    public override string ToString() => ToBase64();

    public bool Equals(PublicKey other) => _a == other._a && _b == other._b && _c == other._c && _d == other._d;
    public override bool Equals(object? obj) => obj is PublicKey other && Equals(other);
    public override int GetHashCode() => HashCode.Combine(_a, _b, _c, _d);
    public static bool operator ==(PublicKey a, PublicKey b) => a.Equals(b);
    public static bool operator !=(PublicKey a, PublicKey b) => !a.Equals(b);
}
