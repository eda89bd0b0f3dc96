using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace Gateway.Datapath;

/// <summary>
/// An IPv4 or IPv6 address as a value type. Unlike <see cref="IPAddress"/> it never allocates,
/// so the datapath can carry it in flow keys and use it for table lookups.
/// IPv4 and IPv6 are distinct families: 1.2.3.4 and ::ffff:1.2.3.4 are different addresses.
/// </summary>
public readonly struct IpAddress : IEquatable<IpAddress>, IComparable<IpAddress>, ISpanFormattable
{
    // Numeric value in host order as two 64-bit halves (an IPv4 address keeps its 32-bit value in
    // the low half). Halves rather than one UInt128: 24 bytes instead of 32 (UInt128 is 16-byte
    // aligned), and equality, hashing and prefix tests stay plain 64-bit operations the JIT inlines
    // on the per-packet paths (flow keys, conntrack, longest-prefix lookups).
    private readonly ulong _hi;
    private readonly ulong _lo;
    private readonly bool _isV6;

    private IpAddress(ulong hi, ulong lo, bool isV6)
    {
        _hi = hi;
        _lo = lo;
        _isV6 = isV6;
    }

    public static IpAddress FromV4(uint value) => new(0, value, isV6: false);

    public static IpAddress FromV6(UInt128 value) => new((ulong)(value >> 64), (ulong)value, isV6: true);

    /// <summary>An IPv6 address from its upper and lower 64 bits (host order).</summary>
    public static IpAddress FromV6(ulong upper, ulong lower) => new(upper, lower, isV6: true);

    public bool IsV4 => !_isV6;

    public bool IsV6 => _isV6;

    /// <summary>32 for IPv4, 128 for IPv6.</summary>
    public int BitLength => _isV6 ? 128 : 32;

    /// <summary>4 for IPv4, 16 for IPv6.</summary>
    public int ByteLength => _isV6 ? 16 : 4;

    /// <summary>The numeric IPv4 value (host order). Meaningless for IPv6.</summary>
    public uint V4 => (uint)_lo;

    /// <summary>The numeric value (host order); for IPv4 the 32-bit value.</summary>
    public UInt128 V6 => new(_hi, _lo);

    /// <summary>
    /// The address left-aligned in 128 bits, so that bit i of any family is bit (127 - i).
    /// Prefix tables use this to treat both families alike.
    /// </summary>
    internal UInt128 LeftAligned
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _isV6 ? new UInt128(_hi, _lo) : new UInt128(_lo << 32, 0);
    }

    /// <summary>The upper 64 bits of <see cref="LeftAligned"/>.</summary>
    internal ulong LeftHigh
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _isV6 ? _hi : _lo << 32;
    }

    /// <summary>The lower 64 bits of <see cref="LeftAligned"/> (zero for IPv4).</summary>
    internal ulong LeftLow
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _isV6 ? _lo : 0;
    }

    /// <summary>The upper 64 bits of the numeric value (host order; 0 for IPv4). With
    /// <see cref="Low"/> it lets data-path hashes work on plain 64-bit words.</summary>
    public ulong High => _hi;

    /// <summary>The lower 64 bits of the numeric value (host order; an IPv4 address's 32-bit value).</summary>
    public ulong Low => _lo;

    internal static IpAddress FromLeftAligned(UInt128 value, bool isV6) => isV6 ? FromV6(value) : FromV4((uint)(value >> 96));

    /// <summary>Reads a 4- or 16-byte address in network order.</summary>
    public static IpAddress FromBytes(ReadOnlySpan<byte> networkOrder)
    {
        if (!TryFromBytes(networkOrder, out var address))
        {
            throw new ArgumentException($"An IP address has 4 or 16 bytes, not {networkOrder.Length}.", nameof(networkOrder));
        }
        return address;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryFromBytes(ReadOnlySpan<byte> networkOrder, out IpAddress address)
    {
        if (networkOrder.Length == 4)
        {
            address = FromV4(BinaryPrimitives.ReadUInt32BigEndian(networkOrder));
            return true;
        }
        if (networkOrder.Length == 16)
        {
            address = FromV6(BinaryPrimitives.ReadUInt64BigEndian(networkOrder), BinaryPrimitives.ReadUInt64BigEndian(networkOrder[8..]));
            return true;
        }
        address = default;
        return false;
    }

    public static IpAddress FromIPAddress(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        Span<byte> bytes = stackalloc byte[16];
        if (!address.TryWriteBytes(bytes, out int written))
        {
            throw new ArgumentException("Unsupported address.", nameof(address));
        }
        return FromBytes(bytes[..written]);
    }

    public IPAddress ToIPAddress()
    {
        Span<byte> bytes = stackalloc byte[16];
        WriteBytes(bytes);
        return new IPAddress(bytes[..ByteLength]);
    }

    /// <summary>Writes the address in network order; needs <see cref="ByteLength"/> bytes.</summary>
    public void WriteBytes(Span<byte> destination)
    {
        if (_isV6)
        {
            BinaryPrimitives.WriteUInt64BigEndian(destination, _hi);
            BinaryPrimitives.WriteUInt64BigEndian(destination[8..], _lo);
        }
        else
        {
            BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)_lo);
        }
    }

    public static bool TryParse(ReadOnlySpan<char> text, out IpAddress address)
    {
        text = text.Trim();
        // IPAddress.TryParse accepts forms a config file should not (e.g. "1", "1.2", scope ids
        // and "0x0a.0.0.1"); insist on dotted quads or a colon form without a zone.
        if (text.IsEmpty || text.Contains('%') || text.Contains('/'))
        {
            address = default;
            return false;
        }
        bool colon = text.Contains(':');
        if (!colon)
        {
            switch (TryParseDottedQuad(text, out uint value))
            {
                case DottedQuad.Decimal:
                    address = FromV4(value);
                    return true;
                case DottedQuad.Invalid:
                    address = default;
                    return false;
            }
            // Leading zeros: let IPAddress decide what they mean, as it always has.
        }
        if (!IPAddress.TryParse(text, out var parsed) ||
            (parsed.AddressFamily == AddressFamily.InterNetworkV6) != colon)
        {
            address = default;
            return false;
        }
        address = FromIPAddress(parsed);
        return true;
    }

    public static IpAddress Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return TryParse(text, out var address) ? address : throw new FormatException($"'{text}' is not an IP address.");
    }

    private enum DottedQuad
    {
        Invalid,
        Decimal,
        LeadingZero,
    }

    /// <summary>Four dot-separated parts of one to three digits, each at most 255. Plain decimal
    /// parts are converted here (the common case: no IPAddress object, no allocation); a part
    /// with a leading zero is reported so the caller keeps IPAddress's reading of it.</summary>
    private static DottedQuad TryParseDottedQuad(ReadOnlySpan<char> text, out uint value)
    {
        value = 0;
        int parts = 0, digits = 0, part = 0;
        bool leadingZero = false;
        for (int i = 0; i <= text.Length; i++)
        {
            char c = i < text.Length ? text[i] : '.';
            if (c == '.')
            {
                if (digits == 0 || part > 255 || ++parts > 4)
                {
                    return DottedQuad.Invalid;
                }
                value = (value << 8) | (uint)part;
                digits = part = 0;
                continue;
            }
            if (c is < '0' or > '9' || ++digits > 3)
            {
                return DottedQuad.Invalid;
            }
            leadingZero |= digits == 2 && part == 0;
            part = part * 10 + (c - '0');
        }
        return parts != 4 ? DottedQuad.Invalid : leadingZero ? DottedQuad.LeadingZero : DottedQuad.Decimal;
    }

    public bool Equals(IpAddress other) => _lo == other._lo && _hi == other._hi && _isV6 == other._isV6;

    public override bool Equals([NotNullWhen(true)] object? obj) => obj is IpAddress other && Equals(other);

    public override int GetHashCode()
    {
        return HashCode.Combine(_lo, _hi, _isV6);
    }

    /// <summary>IPv4 sorts before IPv6; within a family, by numeric value.</summary>
    public int CompareTo(IpAddress other) =>
        _isV6 != other._isV6 ? (_isV6 ? 1 : -1) : _hi != other._hi ? (_hi < other._hi ? -1 : 1) : _lo.CompareTo(other._lo);

    public static bool operator ==(IpAddress left, IpAddress right) => left.Equals(right);

    public static bool operator !=(IpAddress left, IpAddress right) => !left.Equals(right);

    public override string ToString()
    {
        if (!_isV6)
        {
            Span<char> text = stackalloc char[15];
            TryFormat(text, out int written, default, null);
            return new string(text[..written]);
        }
        return ToIPAddress().ToString();
    }

    public string ToString(string? format, IFormatProvider? formatProvider) => ToString();

    public bool TryFormat(Span<char> destination, out int charsWritten, ReadOnlySpan<char> format, IFormatProvider? provider)
    {
        if (!_isV6)
        {
            uint v = (uint)_lo;
            return destination.TryWrite($"{v >> 24}.{(v >> 16) & 0xff}.{(v >> 8) & 0xff}.{v & 0xff}", out charsWritten);
        }
        return ToIPAddress().TryFormat(destination, out charsWritten);
    }
}
