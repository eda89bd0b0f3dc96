using System.Runtime.InteropServices;

namespace Gateway.Crypto.Interop;

internal static unsafe partial class Sodium
{
    /// <summary>q = X25519(n, 9): the public key of the scalar n.</summary>
    [LibraryImport(Library, EntryPoint = "crypto_scalarmult_curve25519_base")]
    public static partial int CryptoScalarMultCurve25519Base(byte* q, byte* n);
}
