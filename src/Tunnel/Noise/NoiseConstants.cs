using System.Text;
using Gateway.Crypto;

namespace Gateway.Tunnel.Noise;

/// <summary>Noise_IKpsk2 constants and the symmetric-state helpers (whitepaper 5.4.1).</summary>
internal static class NoiseConstants
{
    public const string Construction = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
    public const string Identifier = "WireGuard v1 zx2c4 Jason@zx2c4.com";
    public const string LabelMac1 = "mac1----";
    public const string LabelCookie = "cookie--";

    /// <summary>Ci = HASH(CONSTRUCTION).</summary>
    public static readonly byte[] InitialChainKey = ComputeInitialChainKey();
    /// <summary>Hi = HASH(Ci || IDENTIFIER); the responder's static key is mixed in per engine/peer.</summary>
    public static readonly byte[] InitialHash = ComputeInitialHash();

    private static byte[] ComputeInitialChainKey()
    {
        var ck = new byte[32];
        Blake2s.Hash(Encoding.ASCII.GetBytes(Construction), ck);
        return ck;
    }

    private static byte[] ComputeInitialHash()
    {
        var h = new byte[32];
        var hasher = new Blake2sHasher(32);
        hasher.Update(ComputeInitialChainKey());
        hasher.Update(Encoding.ASCII.GetBytes(Identifier));
        hasher.Finish(h);
        return h;
    }

    /// <summary>h = HASH(h || data), in place.</summary>
    public static void MixHash(Span<byte> hash, ReadOnlySpan<byte> data)
    {
        var hasher = new Blake2sHasher(32);
        hasher.Update(hash);
        hasher.Update(data);
        hasher.Finish(hash);
    }

    /// <summary>HASH(label || key): the mac1 and cookie encryption keys.</summary>
    public static void LabelHash(string label, ReadOnlySpan<byte> publicKey, Span<byte> output32)
    {
        Span<byte> l = stackalloc byte[8];
        Encoding.ASCII.GetBytes(label, l);
        var hasher = new Blake2sHasher(32);
        hasher.Update(l);
        hasher.Update(publicKey);
        hasher.Finish(output32);
    }

    /// <summary>MAC(key, data) = keyed BLAKE2s with a 16-byte digest.</summary>
    public static void Mac(ReadOnlySpan<byte> key, ReadOnlySpan<byte> data, Span<byte> output16) =>
        Blake2s.Hash(key, data, output16[..16]);
}
