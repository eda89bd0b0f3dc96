using System.Runtime.InteropServices;

namespace Gateway.Crypto.Interop;

/// <summary>
/// libsodium, the native library NSec ships and loads; Gateway calls it directly only where
/// NSec's object model costs too much on the handshake path (X25519 without importing keys
/// into guarded memory on every message).
/// </summary>
internal static partial class Sodium
{
    public const string Library = "libsodium";

    private static readonly int s_initialized = Init();

    private static int Init()
    {
        // Also done by NSec; returns 1 when already initialised. Chooses the fastest implementations.
        int result = SodiumInit();
        if (result < 0)
        {
            throw new InvalidOperationException("libsodium failed to initialise.");
        }
        return result;
    }

    /// <summary>Makes sure sodium_init ran before the first call.</summary>
    public static void EnsureInitialized() => _ = s_initialized;
}
