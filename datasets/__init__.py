"""aideploy.datasets"""
