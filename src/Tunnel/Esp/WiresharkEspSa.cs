using Gateway.Datapath;

namespace Gateway.Tunnel.Esp;

/// <summary>The keys of one outbound ESP SA, exported so a capture can be decrypted.</summary>
public sealed record EspSaKeys(IpAddress Source, IpAddress Destination, uint Spi, byte[] KeyAndSalt, int IcvBits);

/// <summary>
/// Records of Wireshark's ESP SA table (the <c>esp_sa</c> UAT file of a profile, or
/// <c>tshark -o 'uat:esp_sa:RECORD'</c>), whose fields are, in Wireshark's packet-ipsec.c:
/// protocol, source, destination, SPI, encryption algorithm, encryption key (hex with 0x; for
/// AES-GCM the AES key followed by the salt, as in the keys file), authentication algorithm
/// (NULL for an AEAD) and authentication key. Wireshark 4.0 builds the GCM AAD without the ESN
/// high bits, so with extended sequence numbers it decrypts the payload but reports the ICV as
/// incorrect; decoding the inner packet does not depend on it.
/// </summary>
public static class WiresharkEspSa
{
    public static string Record(EspSaKeys sa)
    {
        if (!sa.Source.IsV4 || !sa.Destination.IsV4) throw new ArgumentException("Only IPv4 node addresses are written.");
        return $"\"IPv4\",\"{sa.Source}\",\"{sa.Destination}\",\"0x{sa.Spi:x8}\",\"AES-GCM with {sa.IcvBits / 8} octet ICV [RFC4106]\",\"0x{Convert.ToHexStringLower(sa.KeyAndSalt)}\",\"NULL\",\"\"";
    }

    /// <summary>An esp_sa file: a comment saying what it is, then one record per SA.</summary>
    public static string File(IEnumerable<EspSaKeys> sas) =>
        "# Wireshark ESP SAs (esp_sa UAT file) written by Gateway: secret keys, keep it private\n" +
        string.Concat(sas.Select(sa => Record(sa) + "\n"));
}
