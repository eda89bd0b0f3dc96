using System.Globalization;

namespace Gateway.Tunnel.Esp;

/// <summary>One key from a Cilium-style IPsec keys file.</summary>
/// <param name="Spi">The key id, 1..15, used as the ESP SPI on the wire (Cilium's rule).</param>
/// <param name="PerNodePair">The id carried a '+': per node-pair keys are derived (Gateway derives
/// them for every key, as current Cilium does; the flag is kept to print the file back).</param>
/// <param name="KeyAndSalt">AES key followed by the 4-byte salt (20, 28 or 36 bytes).</param>
/// <param name="IcvBits">96 or 128.</param>
public sealed record IpsecKey(byte Spi, bool PerNodePair, byte[] KeyAndSalt, int IcvBits)
{
    /// <summary>The AES key length without the salt.</summary>
    public int KeyLength => KeyAndSalt.Length - 4;

    /// <summary>Same id, key bytes and ICV: a re-read of an unchanged file.</summary>
    public bool SameAs(IpsecKey other) =>
        Spi == other.Spi && IcvBits == other.IcvBits && KeyAndSalt.AsSpan().SequenceEqual(other.KeyAndSalt);

    /// <summary>Never prints the key.</summary>
    public override string ToString() => $"key id {Spi}{(PerNodePair ? "+" : "")} rfc4106(gcm(aes)) {KeyLength * 8}-bit, ICV {IcvBits}";
}

/// <summary>A keys file Gateway cannot use; the message is one line for the operator.</summary>
public sealed class IpsecKeyException(string message) : Exception(message);

/// <summary>
/// Parses Cilium's IPsec keys file (the <c>keys</c> entry of the <c>cilium-ipsec-keys</c>
/// secret), one key per line: <c>[spi][+] rfc4106(gcm(aes)) &lt;hex key+salt&gt; &lt;icv bits&gt;</c>,
/// for example <c>3+ rfc4106(gcm(aes)) 0123...cdef 128</c>. Cilium's LoadIPSecKeys
/// (pkg/datapath/linux/ipsec/ipsec_linux.go) reads the same fields: the key id must be 1..15
/// (IPsecMaxKeyVersion), the hex may start with 0x, the ICV is a bit count. Gateway accepts
/// only the AEAD form with rfc4106(gcm(aes)) (not Cilium's older "auth-algo auth-key enc-algo
/// enc-key" CBC/HMAC form) and ICVs of 96 or 128 bits. Blank lines and lines starting with '#'
/// are skipped (Cilium has none; they make hand-written files readable).
/// </summary>
public static class IpsecKeyFile
{
    public const int MaxKeyId = 15;
    public const string Algorithm = "rfc4106(gcm(aes))";

    /// <summary>The keys in file order (the last one is the one to send with, as in Cilium).</summary>
    public static IReadOnlyList<IpsecKey> Parse(string text)
    {
        var keys = new List<IpsecKey>();
        int lineNumber = 0;
        foreach (string raw in text.Split('\n'))
        {
            lineNumber++;
            string line = raw.Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            keys.Add(ParseLine(line, lineNumber));
        }
        if (keys.Count == 0)
            throw new IpsecKeyException("the IPsec keys file has no key (expected a line like \"3+ rfc4106(gcm(aes)) <40 hex digits> 128\")");
        return keys;
    }

    private static IpsecKey ParseLine(string line, int lineNumber)
    {
        string where = $"IPsec keys file line {lineNumber}";
        string[] fields = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        if (fields.Length == 3 && fields[0].Equals(Algorithm, StringComparison.Ordinal))
            throw new IpsecKeyException($"{where}: the key id is missing (Gateway needs \"<id>[+] {Algorithm} <hex> <icv>\", id 1..{MaxKeyId})");
        if (fields.Length is 5 or 6)
            throw new IpsecKeyException($"{where}: the \"auth-algo auth-key enc-algo enc-key\" form is not supported; use {Algorithm}");
        if (fields.Length != 4)
            throw new IpsecKeyException($"{where}: expected 4 fields \"<id>[+] {Algorithm} <hex key+salt> <icv bits>\", found {fields.Length}");

        string id = fields[0];
        bool plus = id.EndsWith('+');
        if (plus) id = id[..^1];
        if (!int.TryParse(id, NumberStyles.None, CultureInfo.InvariantCulture, out int spi))
            throw new IpsecKeyException($"{where}: the key id \"{fields[0]}\" is not a number");
        if (spi is < 1 or > MaxKeyId)
            throw new IpsecKeyException($"{where}: key id {spi} is out of range; it must be 1..{MaxKeyId}");

        if (!fields[1].Equals(Algorithm, StringComparison.Ordinal))
            throw new IpsecKeyException($"{where}: algorithm \"{fields[1]}\" is not supported; only {Algorithm}");

        string hex = fields[2].StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? fields[2][2..] : fields[2];
        byte[] key;
        try
        {
            key = Convert.FromHexString(hex);
        }
        catch (FormatException)
        {
            throw new IpsecKeyException($"{where}: the key is not an even number of hex digits");
        }
        if (key.Length is not (20 or 28 or 36))
            throw new IpsecKeyException($"{where}: an {Algorithm} key is 16, 24 or 32 bytes of AES key plus 4 bytes of salt (40, 56 or 72 hex digits), not {key.Length} bytes");

        if (!int.TryParse(fields[3], NumberStyles.None, CultureInfo.InvariantCulture, out int icv) || icv is not (96 or 128))
            throw new IpsecKeyException($"{where}: the ICV length \"{fields[3]}\" is not supported; use 96 or 128 (bits)");

        return new IpsecKey((byte)spi, plus, key, icv);
    }
}
