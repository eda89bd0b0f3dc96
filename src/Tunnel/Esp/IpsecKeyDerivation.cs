using System.Security.Cryptography;
using System.Text;
using Gateway.Datapath;

namespace Gateway.Tunnel.Esp;

/// <summary>
/// Cilium's per node-pair IPsec keys (computeNodeIPsecKey in
/// pkg/datapath/linux/ipsec/ipsec_linux.go): from the global key G, the source and destination
/// node addresses (4 bytes for IPv4, 16 for IPv6) and the two boot ids (the first 36 characters,
/// a UUID's text form):
/// <code>
///   key(src, dst) = H(G || src || dst || bootId(src)[..36] || bootId(dst)[..36])[..len(G)]
///   H = SHA-256 when len(G) &lt;= 32, SHA-512 otherwise
/// </code>
/// G is the whole hex value of the keys file, salt included, so the derived bytes are a new
/// key and a new salt. Node A sends to B with key(A, B) and receives from B with key(B, A), so
/// each direction of each pair has its own key, and a new boot id on either side gives new keys.
/// </summary>
public static class IpsecKeyDerivation
{
    public const int BootIdLength = 36;

    /// <summary>The key (and salt) that <paramref name="source"/> uses to send to <paramref name="destination"/>.</summary>
    public static byte[] Derive(ReadOnlySpan<byte> globalKey, IpAddress source, IpAddress destination, string sourceBootId, string destinationBootId)
    {
        if (sourceBootId.Length < BootIdLength || destinationBootId.Length < BootIdLength)
            throw new ArgumentException($"A boot id must be at least {BootIdLength} characters long (a UUID).");
        if (!System.Text.Ascii.IsValid(sourceBootId) || !System.Text.Ascii.IsValid(destinationBootId))
            throw new ArgumentException("A boot id is ASCII (a UUID).");
        // Cilium's canonicalIP: an IPv4-mapped IPv6 address counts as its 4-byte IPv4 address.
        source = Canonical(source);
        destination = Canonical(destination);
        int length = globalKey.Length + source.ByteLength + destination.ByteLength + 2 * BootIdLength;
        byte[] input = new byte[length];
        var span = input.AsSpan();
        globalKey.CopyTo(span);
        int at = globalKey.Length;
        source.WriteBytes(span[at..]);
        at += source.ByteLength;
        destination.WriteBytes(span[at..]);
        at += destination.ByteLength;
        at += Encoding.UTF8.GetBytes(sourceBootId.AsSpan(0, BootIdLength), span[at..]);
        Encoding.UTF8.GetBytes(destinationBootId.AsSpan(0, BootIdLength), span[at..]);
        byte[] hash = globalKey.Length <= 32 ? SHA256.HashData(input) : SHA512.HashData(input);
        CryptographicOperations.ZeroMemory(input);
        byte[] key = hash.AsSpan(0, globalKey.Length).ToArray();
        CryptographicOperations.ZeroMemory(hash);
        return key;
    }

    private static IpAddress Canonical(IpAddress address) =>
        address.IsV6 && address.V6 >> 32 == 0xFFFF ? IpAddress.FromV4((uint)address.V6) : address;
}
