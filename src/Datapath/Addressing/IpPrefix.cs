using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace Gateway.Datapath;

/// <summary>An address prefix such as 10.0.0.0/8 or fd00::/64, with host bits cleared.</summary>
public readonly struct IpPrefix : IEquatable<IpPrefix>
{
    public IpPrefix(IpAddress address, int length)
    {
        if ((uint)length > (uint)address.BitLength)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, $"A prefix of this family has 0 to {address.BitLength} bits.");
        }
        Length = length;
        Address = IpAddress.FromLeftAligned(address.LeftAligned & Mask(length), address.IsV6);
    }

    public IpAddress Address { get; }

    public int Length { get; }

    /// <summary>The left-aligned mask of the first <paramref name="length"/> bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static UInt128 Mask(int length) => length == 0 ? UInt128.Zero : UInt128.MaxValue << (128 - length);

    public bool Contains(IpAddress address) =>
        address.IsV6 == Address.IsV6 && ((address.LeftAligned ^ Address.LeftAligned) & Mask(Length)) == UInt128.Zero;

    public bool Contains(IpPrefix other) => other.Length >= Length && Contains(other.Address);

    /// <summary>Parses "10.0.0.0/8" or "fd00::/64"; a bare address is a host prefix (/32 or /128).</summary>
    public static bool TryParse(ReadOnlySpan<char> text, out IpPrefix prefix)
    {
        text = text.Trim();
        int slash = text.IndexOf('/');
        var addressText = slash < 0 ? text : text[..slash];
        if (!IpAddress.TryParse(addressText, out var address))
        {
            prefix = default;
            return false;
        }
        int length = address.BitLength;
        if (slash >= 0)
        {
            var lengthText = text[(slash + 1)..];
            if (lengthText.IsEmpty || lengthText.Length > 3 || !int.TryParse(lengthText, System.Globalization.NumberStyles.None, null, out length) ||
                length > address.BitLength)
            {
                prefix = default;
                return false;
            }
        }
        prefix = new IpPrefix(address, length);
        return true;
    }

    public static IpPrefix Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return TryParse(text, out var prefix) ? prefix : throw new FormatException($"'{text}' is not an IP prefix.");
    }

    public bool Equals(IpPrefix other) => Length == other.Length && Address == other.Address;

    public override bool Equals([NotNullWhen(true)] object? obj) => obj is IpPrefix other && Equals(other);

    public override int GetHashCode() => HashCode.Combine(Address, Length);

    public static bool operator ==(IpPrefix left, IpPrefix right) => left.Equals(right);

    public static bool operator !=(IpPrefix left, IpPrefix right) => !left.Equals(right);

    public override string ToString() => $"{Address}/{Length}";
}
