"""aideploy.knowledge"""
