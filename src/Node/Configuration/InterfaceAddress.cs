using Gateway.Datapath;

namespace Gateway.Node.Configuration;

/// <summary>An address assigned to the tunnel interface with its on-link prefix length,
/// e.g. 10.0.0.1/24 (unlike <see cref="IpPrefix"/>, host bits are kept).</summary>
public readonly record struct InterfaceAddress(IpAddress Address, int PrefixLength)
{
    public static bool TryParse(ReadOnlySpan<char> text, out InterfaceAddress value)
    {
        value = default;
        text = text.Trim();
        int slash = text.IndexOf('/');
        if (!IpAddress.TryParse(slash < 0 ? text : text[..slash], out var address))
        {
            return false;
        }
        int length = address.BitLength;
        if (slash >= 0 && (!int.TryParse(text[(slash + 1)..], System.Globalization.NumberStyles.None, null, out length) || length > address.BitLength))
        {
            return false;
        }
        value = new InterfaceAddress(address, length);
        return true;
    }

    public IpPrefix Network => new(Address, PrefixLength);

    public override string ToString() => $"{Address}/{PrefixLength}";
}
